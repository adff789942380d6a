"""What a PNG stores about how it was made (`GenerationRecord`), so an image can be regenerated bit-for-bit from the
file alone.

Two text chunks: `facestudio` holds the full JSON record (request, seed, models with SHA-256, reference photos with
SHA-256, similarity, versions); `parameters` holds the same essentials in the plain-text form other Stable
Diffusion tools show ("Steps: 30, Sampler: ..., Seed: ..."). The JSON layout is format 1 from the first release on;
`GenerationRecord` is its typed form, and the only way the engine and the fronts read or write it.

A PNG travels (downloads, shares), so it names no folder of the machine: every file in a written record (inputs,
models) is named relative to FACESTUDIO_HOME when it lies inside it, else by its file name alone (`portable`).
Reading a record back (`resolved`) finds the files relative to FACESTUDIO_HOME again, so a PNG made from files the
studio keeps (saved identities, the model cache, jobs' adapters) is regenerated from the PNG alone; other inputs are
passed again (`generate --from-png --face`). Records written before this kept absolute paths, which still work.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, PngImagePlugin

from facestudio.engine.requests import MASK_REGIONS, GenerateRequest, InpaintRequest
from facestudio.errors import MetadataError
from facestudio.files import write_atomic

if TYPE_CHECKING:  # facestudio.face imports OpenCV; the page reads records without it
    from facestudio.face.identity import Similarity

METADATA_KEY = "facestudio"
METADATA_FORMAT = 1

#: A record larger or more deeply nested than this is refused before it is parsed (a real one is a few KB, nested
#: 4 levels): a crafted PNG cannot exhaust memory or the parser's recursion.
MAX_RECORD_CHARS = 256 * 1024
MAX_RECORD_DEPTH = 16

#: The model kinds a record lists (each `{"spec", "path", "sha256"}` or `None` when the request used none).
MODEL_KINDS = ("base_model", "fact_adapter", "face_encoder", "controlnet", "canny_controlnet", "lora")


@dataclass(frozen=True)
class FileDigest:
    """An input file as it was used: its path then, and the SHA-256 of its contents."""

    path: str
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FileDigest | None:
        return None if not data else cls(str(data["path"]), str(data["sha256"]))


@dataclass(frozen=True)
class GenerationRecord:
    """How one image was made: its request (with its own seed, one image), the models and inputs with their
    SHA-256, the device and precision, and the identity similarity of the result.

    Inpainting adds the template, the mask file (when the mask was a file), the crop box and working size, and the
    template face that was replaced; a pose adds its photo. A multi-stage recipe (`release` inpainting) lists each
    stage's settings in `stages`; so do the face fix after text-to-image (one `face-fix` stage per fixed face) and
    several people in one template (one `face` stage per assigned face, with its references' SHA-256 and the
    identity score before and after). A best-of-N image lists every candidate (`seed`, `score`, `rank`, `kept`)
    in `candidates`.
    """

    request: GenerateRequest
    image_index: int
    width: int
    height: int
    scheduler_title: str
    models: dict[str, dict[str, str] | None]
    references: tuple[dict[str, str], ...]
    device: str
    dtype: str
    similarity: Similarity | None = None
    template: FileDigest | None = None
    mask_file: FileDigest | None = None
    pose_image: FileDigest | None = None
    crop_box: tuple[int, int, int, int] | None = None
    working_size: tuple[int, int] | None = None
    template_face_bbox: tuple[float, ...] | None = None
    stages: tuple[dict[str, Any], ...] = ()
    candidates: tuple[dict[str, Any], ...] = ()
    facestudio_version: str = ""
    diffusers_version: str = ""
    torch_version: str = ""
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One shape for every record: each model kind present (None when unused), references as a tuple.
        object.__setattr__(self, "models", {kind: self.models.get(kind) for kind in MODEL_KINDS})
        object.__setattr__(self, "references", tuple(dict(entry) for entry in self.references))
        object.__setattr__(self, "stages", tuple(dict(entry) for entry in self.stages))
        object.__setattr__(self, "candidates", tuple(dict(entry) for entry in self.candidates))

    @property
    def seed(self) -> int:
        """The seed this image was made with (a record's request always carries it)."""
        return int(self.request.seed or 0)

    @property
    def mode(self) -> str:
        return self.request.mode

    def to_request(self) -> GenerateRequest:
        """The request that makes this image again (one image, this seed, the models as they were named)."""
        return self.request

    # -- JSON ------------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            **self.extra,
            "facestudio_version": self.facestudio_version,
            "diffusers_version": self.diffusers_version,
            "torch_version": self.torch_version,
            "created": self.created,
            "request": self.request.to_dict(),
            "seed": self.seed,
            "image_index": self.image_index,
            "width": self.width,
            "height": self.height,
            "scheduler_title": self.scheduler_title,
            "models": dict(self.models),
            "references": [dict(entry) for entry in self.references],
            "device": self.device,
            "dtype": self.dtype,
            "similarity": self.similarity.to_dict() if self.similarity else None,
        }
        for name in ("template", "mask_file", "pose_image"):
            digest = getattr(self, name)
            if digest is not None:
                data[name] = digest.to_dict()
        for name in ("crop_box", "working_size", "template_face_bbox"):
            value = getattr(self, name)
            if value is not None:
                data[name] = list(value)
        if self.stages:
            data["stages"] = [dict(entry) for entry in self.stages]
        if self.candidates:
            data["candidates"] = [dict(entry) for entry in self.candidates]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the record") -> GenerationRecord:
        """Raises `MetadataError` naming `source` when a part is missing or of the wrong kind."""
        from facestudio.face.identity import Similarity

        try:
            request_data = dict(data["request"])
            # Records from before recipes existed were all made by the one-pass pipelines.
            request_data.setdefault("recipe", "single")
            # Records from before the face fix existed had none: regenerating them must not add one.
            request_data.setdefault("face_fix", "off")
            request_class = InpaintRequest if request_data.get("mode") == "inpaint" else GenerateRequest
            request = request_class.from_dict({**request_data, "seed": int(data["seed"]), "num_images": 1})
            similarity = data.get("similarity")
            known = {f.name for f in dataclasses.fields(cls)} | {"seed", "format"}
            return cls(
                request=request,
                image_index=int(data.get("image_index", 0)),
                width=int(data["width"]),
                height=int(data["height"]),
                scheduler_title=str(data.get("scheduler_title", request.scheduler)),
                models=dict(data.get("models") or {}),
                references=tuple(data.get("references") or ()),
                device=str(data.get("device", "")),
                dtype=str(data.get("dtype", "")),
                similarity=Similarity(**similarity) if similarity else None,
                template=FileDigest.from_dict(data.get("template")),
                mask_file=FileDigest.from_dict(data.get("mask_file")),
                pose_image=FileDigest.from_dict(data.get("pose_image")),
                crop_box=_tuple(data.get("crop_box"), int),
                working_size=_tuple(data.get("working_size"), int),
                template_face_bbox=_tuple(data.get("template_face_bbox"), float),
                stages=tuple(data.get("stages") or ()),
                candidates=tuple(data.get("candidates") or ()),
                facestudio_version=str(data.get("facestudio_version", "")),
                diffusers_version=str(data.get("diffusers_version", "")),
                torch_version=str(data.get("torch_version", "")),
                created=str(data.get("created", "")),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise MetadataError(f"{source} has damaged FaceStudio parameters ({type(err).__name__}: {err}).") from None

    # -- PNG -------------------------------------------------------------------------------------------------------

    def to_png(self, image: Image.Image, path: Path, home: Path | None = None) -> Path:
        """Write `image` with this record (`portable`: no folder of the machine) in its text chunks, atomically (a
        crash never leaves half a PNG)."""
        return save_png(image, path, self.portable(home).to_dict())

    @classmethod
    def from_png(cls, path: str | Path, home: Path | None = None) -> GenerationRecord:
        """The record of a PNG written by `to_png` (with its files found under `home` again: `resolved`);
        `MetadataError` for anything else."""
        record = cls.from_dict(read_png_record(path), Path(path).name)
        return record if home is None else record.resolved(home)

    # -- files named without the machine's folders ---------------------------------------------------------------

    def portable(self, home: Path | None) -> GenerationRecord:
        """This record with every file named relative to `home` (inside it) or by its name (outside it, or with no
        `home`); registry keys and hub ids stay as they are."""
        return self._map_files(lambda value: portable_path(value, home))

    def resolved(self, home: Path) -> GenerationRecord:
        """This record with every file named relative to `home` (by `portable`) found there again; names of files
        that are not under `home` stay as they are (relative to the working folder)."""
        return self._map_files(lambda value: resolved_path(value, home))

    def _map_files(self, change: Callable[[str], str]) -> GenerationRecord:
        def one(value: Any) -> Any:
            return change(value) if isinstance(value, str) and value else value

        request = self.request
        models = dataclasses.replace(request.models, **{f.name: one(getattr(request.models, f.name))
                                                        for f in dataclasses.fields(request.models)})
        changes: dict[str, Any] = {"faces": tuple(one(face) for face in request.faces), "lora": one(request.lora),
                                   "pose": one(request.pose), "models": models}
        if isinstance(request, InpaintRequest):
            changes["image"] = one(request.image)
            if request.mask not in MASK_REGIONS:
                changes["mask"] = one(request.mask)
        return dataclasses.replace(
            self, request=dataclasses.replace(request, **changes),
            models={kind: None if entry is None else {key: one(v) if key in ("spec", "path") else v
                                                      for key, v in entry.items()}
                    for kind, entry in self.models.items()},
            references=tuple({key: one(v) if key == "path" else v for key, v in entry.items()}
                             for entry in self.references),
            template=None if self.template is None else FileDigest(one(self.template.path), self.template.sha256),
            mask_file=None if self.mask_file is None else FileDigest(one(self.mask_file.path), self.mask_file.sha256),
            pose_image=None if self.pose_image is None else FileDigest(one(self.pose_image.path),
                                                                        self.pose_image.sha256))


def portable_path(value: str, home: Path | None) -> str:
    """A file as a record names it: relative to `home` (POSIX separators) when it lies inside it, else its name.
    Values that are not files on this machine (registry keys, hub ids, "auto") and relative names that do not
    exist stay as they are."""
    if not os.path.isabs(value) and not os.path.exists(value):
        return value
    if home is not None:
        # As the studio names it first (a model linked into the home stays "models/..."), then as it really is.
        pairs = ((Path(os.path.normpath(os.path.abspath(value))), Path(os.path.normpath(os.path.abspath(home)))),
                 (Path(value).resolve(), Path(home).resolve()))
        for path, root in pairs:
            if path.is_relative_to(root) and path != root:
                return path.relative_to(root).as_posix()
    return Path(os.path.normpath(os.path.abspath(value))).name


def resolved_path(value: str, home: Path) -> str:
    """A file a record names, found again: relative names under `home` when the file is there; anything else as
    it is (absolute paths of older records, registry keys, hub ids, names of files outside `home`)."""
    if os.path.isabs(value) or "\x00" in value:
        return value
    candidate = Path(home) / value
    root = os.path.normpath(os.path.abspath(home))
    if not Path(os.path.normpath(os.path.abspath(candidate))).is_relative_to(root):  # no way out with "../"
        return value
    try:
        return str(candidate) if candidate.exists() else value
    except (OSError, ValueError):
        return value


def _tuple(value: Any, kind: type) -> tuple | None:
    return None if value is None else tuple(kind(v) for v in value)


def parameters_text(record: dict[str, Any]) -> str:
    """The A1111-style summary line block, for other tools and quick reading."""
    request = record["request"]
    lines = [request["prompt"]]
    if request.get("negative_prompt"):
        lines.append(f"Negative prompt: {request['negative_prompt']}")
    fields = {
        "Steps": request["steps"],
        "Sampler": record.get("scheduler_title", request["scheduler"]),
        "CFG scale": request["cfg"],
        "Seed": record["seed"],
        "Size": f"{record['width']}x{record['height']}",
        "Model": record["models"]["base_model"]["spec"],
        "Model hash": record["models"]["base_model"]["sha256"][:10],
        "Face strength": request["face_strength"],
    }
    if request.get("lora"):
        fields["Lora"] = f"{Path(request['lora']).name}:{request['lora_scale']}"
    if request["mode"] == "inpaint":
        fields["Denoising strength"] = request["denoise"]
    fields["Recipe"] = request.get("recipe", "single")
    lines.append(", ".join(f"{k}: {v}" for k, v in fields.items()))
    return "\n".join(lines)


def save_png(image: Image.Image, path: Path, record: dict[str, Any]) -> Path:
    """Write `image` with `record` in its text chunks, atomically (a crash never leaves half a PNG)."""
    info = PngImagePlugin.PngInfo()
    info.add_text(METADATA_KEY, json.dumps({"format": METADATA_FORMAT, **record}, sort_keys=True))
    info.add_text("parameters", parameters_text(record))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return write_atomic(path, buffer.getvalue())


def read_png_record(path: str | Path) -> dict[str, Any]:
    """The `facestudio` record of a PNG written by `save_png`.

    Raises:
        `MetadataError`: not a readable PNG, or it has no (or a damaged) FaceStudio record.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image_format = image.format
            text = dict(getattr(image, "text", {}) or {})
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise MetadataError(f"{path.name} cannot be read as an image: {err}.") from err
    if image_format != "PNG":
        raise MetadataError(f"{path.name} is a {image_format or 'non-image'} file; reusing settings needs a "
                            "PNG saved by FaceStudio.")
    if METADATA_KEY not in text:
        raise MetadataError(f"{path.name} carries no FaceStudio generation parameters (was it saved by FaceStudio, "
                            "and not re-saved by another program?).")
    raw = text[METADATA_KEY]
    if not isinstance(raw, str) or len(raw) > MAX_RECORD_CHARS:
        raise MetadataError(f"{path.name} has a FaceStudio record larger than {MAX_RECORD_CHARS // 1024} KB; it "
                            "was not written by FaceStudio.")
    if json_depth(raw) > MAX_RECORD_DEPTH:
        raise MetadataError(f"{path.name} has a FaceStudio record nested deeper than {MAX_RECORD_DEPTH} levels; it "
                            "was not written by FaceStudio.")
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise MetadataError(f"{path.name} has damaged FaceStudio parameters: {err}.") from err
    if not isinstance(record, dict) or "request" not in record or "seed" not in record:
        raise MetadataError(f"{path.name} has incomplete FaceStudio parameters (no request or seed).")
    version = record.get("format", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise MetadataError(f"{path.name} has damaged FaceStudio parameters (the format is not a number).")
    if version > METADATA_FORMAT:
        raise MetadataError(f"{path.name} was written by a newer FaceStudio (format {record['format']}); update "
                            "FaceStudio to regenerate it.")
    return record


def json_depth(text: str) -> int:
    """How deeply the arrays and objects of JSON `text` nest (brackets inside strings do not count), found without
    parsing it, so a crafted record is refused before the parser recurses."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
