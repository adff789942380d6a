"""What models the studio knows: registry records (from `models.json`) and user-given sources.

Identifying a model is kept apart from downloading (`hub.py`) and loading (`manager.py`). A user names a model in
one of five ways, and `resolve_source` turns each into a `ModelSource`:

- a registry key (`majicmix`, `fact-film`, `transface-s`, `openpose`, ...);
- a local diffusers folder, or a single `.safetensors`/`.ckpt` file;
- `hf:owner/name` or a bare `owner/name` (Hugging Face), optionally `hf:owner/name/path/in/repo.safetensors`;
- `modelscope:owner/name` (ModelScope), optionally with a file path after the name;
- any of the hub forms may end in `@revision`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from facestudio.errors import UnknownModelError

KINDS = ("base_model", "fact_adapter", "face_encoder", "controlnet", "pipeline_config", "lora", "clip")
#: What each role of `models.json`'s "roles" must be: the release's edge ControlNet, its default style LoRA.
ROLE_KINDS = {"canny_controlnet": "controlnet", "style_lora": "lora"}
HUBS = ("huggingface", "modelscope")
_HUB_PREFIXES = {"hf:": "huggingface", "huggingface:": "huggingface", "modelscope:": "modelscope", "ms:": "modelscope"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class ModelRecord:
    """A model the studio can download: where it lives on a hub and what it is for.

    `file` names one file (adapters, encoders); otherwise `allow_patterns` select a folder snapshot and
    `subfolder` is the part of it to load. `size_bytes` is the approximate download size, shown before asking; the
    exact size is read from the hub when it is reachable.
    """

    key: str
    kind: str
    title: str
    hub: str
    repo: str
    revision: str | None = None
    file: str | None = None
    subfolder: str | None = None
    allow_patterns: tuple[str, ...] = ()
    size_bytes: int = 0
    adapter: str | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Model {self.key!r} has kind {self.kind!r}; expected one of {KINDS}.")
        if self.hub not in HUBS:
            raise ValueError(f"Model {self.key!r} has hub {self.hub!r}; expected one of {HUBS}.")

    @property
    def hub_label(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        where = "ModelScope" if self.hub == "modelscope" else "Hugging Face"
        path = f"/{self.file}" if self.file else ""
        return f"{self.repo}{path}{revision} on {where}"


@dataclass(frozen=True)
class ModelSource:
    """Where one model comes from: a registry record or ad-hoc hub reference (`record`), or a local `path`."""

    spec: str
    kind: str
    record: ModelRecord | None = None
    path: Path | None = None

    @property
    def is_single_file(self) -> bool:
        return self.path is not None and self.path.is_file()

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else self.hub_record.key

    @property
    def hub_record(self) -> ModelRecord:
        """The record of a source that is not a local path (every source has a `path` or a `record`)."""
        if self.record is None:
            raise ValueError(f"Model source {self.spec!r} has neither a local path nor a record.")
        return self.record


def is_hub_reference(spec: object) -> bool:
    """`modelscope:owner/name/file@rev`, `hf:...`: a file on a hub rather than on disk (a preset's LoRA)."""
    return isinstance(spec, str) and spec.startswith(tuple(_HUB_PREFIXES))


def is_remote_lora(spec: object, registry: ModelRegistry) -> bool:
    """A LoRA fetched rather than read from disk: a hub reference or a registry key of kind `lora`
    (`portrait-lora`, which the release uses for styles without a LoRA of their own)."""
    if is_hub_reference(spec):
        return True
    record = registry.records.get(spec) if isinstance(spec, str) else None
    return record is not None and record.kind == "lora"


@dataclass
class ModelRegistry:
    """The known models, by key, and the default model of each kind. `get` raises `UnknownModelError` listing what
    is known.

    `defaults` maps a kind to the key used when a user names no model of that kind (`models.json`'s "defaults"; the
    one place default model names are written). The FACT adapter has none of its own: it follows the base model.
    """

    records: dict[str, ModelRecord] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    #: Defaults for a role rather than a kind (`models.json`'s "roles", `ROLE_KINDS`): `canny_controlnet`, `style_lora`.
    roles: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> ModelRegistry:
        data = json.loads(text)
        records = {}
        for entry in data["models"]:
            entry = dict(entry)
            entry["allow_patterns"] = tuple(entry.get("allow_patterns", ()))
            record = ModelRecord(**entry)
            if record.key in records:
                raise ValueError(f"The model registry lists {record.key!r} twice.")
            records[record.key] = record
        registry = cls(records, dict(data.get("defaults", {})), dict(data.get("roles", {})))
        for role, key in registry.roles.items():
            kind = ROLE_KINDS.get(role)
            if kind is None or registry.get(key).kind != kind:
                raise ValueError(f"The registry's {role!r} is {key!r}, which is not a {kind or 'known role'}.")
        for kind, key in registry.defaults.items():
            if kind not in KINDS or kind == "fact_adapter" or registry.get(key).kind != kind:
                raise ValueError(f"The registry's default {kind!r} is {key!r}, which is not a model of that kind.")
        for record in records.values():
            if record.adapter is not None and registry.get(record.adapter).kind != "fact_adapter":
                raise ValueError(f"{record.key!r} names {record.adapter!r} as its adapter, which is not a FACT adapter.")
        return registry

    @classmethod
    def default(cls) -> ModelRegistry:
        """The registry shipped with the package (`facestudio/engine/models.json`)."""
        return cls.from_json(resources.files("facestudio.engine").joinpath("models.json").read_text())

    def get(self, key: str) -> ModelRecord:
        try:
            return self.records[key]
        except KeyError:
            raise UnknownModelError(
                f"Unknown model {key!r}; known models: {', '.join(sorted(self.records))}.", key, sorted(self.records)
            ) from None

    def default_for(self, kind: str) -> str:
        """The key of the default model of `kind` (`models.json`'s "defaults", or a role in its "roles")."""
        try:
            return self.defaults[kind] if kind in self.defaults else self.roles[kind]
        except KeyError:
            raise UnknownModelError(f"The model registry names no default {kind.replace('_', ' ')}.", kind,
                                    sorted(self.records)) from None

    def of_kind(self, kind: str) -> list[ModelRecord]:
        return [record for record in self.records.values() if record.kind == kind]

    def adapter_for(self, base: ModelSource) -> ModelRecord:
        """The FACT adapter that matches a base model: its registry partner, or the default base model's adapter
        for a custom SD1.5 model (FACT adapters work on SD1.5 fine-tunes; the matching one is best)."""
        record = base.record
        if record is not None and record.adapter:
            return self.get(record.adapter)
        default_base = self.get(self.default_for("base_model"))
        if default_base.adapter is None:
            raise UnknownModelError(f"The default base model {default_base.key!r} names no FACT adapter.",
                                    default_base.key, sorted(self.records))
        return self.get(default_base.adapter)


def _split_revision(text: str) -> tuple[str, str | None]:
    if "@" in text:
        text, revision = text.rsplit("@", 1)
        return text, revision or None
    return text, None


def resolve_source(spec: str | Path, kind: str, registry: ModelRegistry) -> ModelSource:
    """Turn what a user typed into a `ModelSource` of `kind`.

    Raises:
        `UnknownModelError`: `spec` is none of the accepted forms, or a registry key of another kind.
    """
    text = str(spec).strip()
    if not text:
        raise UnknownModelError(f"An empty model name was given for the {kind.replace('_', ' ')}.", text)
    if text in registry.records:
        record = registry.records[text]
        if record.kind != kind:
            raise UnknownModelError(
                f"{text!r} is a {record.kind.replace('_', ' ')}, not a {kind.replace('_', ' ')}; known "
                f"{kind.replace('_', ' ')}s: {', '.join(r.key for r in registry.of_kind(kind)) or 'none'}.",
                text,
                [r.key for r in registry.of_kind(kind)],
            )
        return ModelSource(text, kind, record=record)
    path = Path(text).expanduser()
    if path.exists():
        return ModelSource(text, kind, path=path.resolve())
    for prefix, hub in _HUB_PREFIXES.items():
        if text.startswith(prefix):
            return _hub_source(text, text[len(prefix) :], hub, kind)
    if _REPO_ID.match(_split_revision(text)[0]):
        return _hub_source(text, text, "huggingface", kind)
    if text.lower().endswith(SINGLE_FILE_SUFFIXES) or "/" in text or "\\" in text:
        raise UnknownModelError(f"Model file or folder {text!r} does not exist.", text, sorted(registry.records))
    raise UnknownModelError(
        f"{text!r} is not a known model, an existing file or folder, or a hub id (owner/name, hf:owner/name or "
        f"modelscope:owner/name); known: {', '.join(r.key for r in registry.of_kind(kind)) or 'none'}.",
        text,
        sorted(registry.records),
    )


def _hub_source(spec: str, rest: str, hub: str, kind: str) -> ModelSource:
    rest, revision = _split_revision(rest)
    parts = [part for part in rest.split("/") if part]
    if len(parts) < 2:
        raise UnknownModelError(f"Hub id {spec!r} must look like owner/name.", spec)
    repo = "/".join(parts[:2])
    inner = "/".join(parts[2:]) or None
    file = inner if inner and inner.lower().endswith(SINGLE_FILE_SUFFIXES) else None
    subfolder = inner if inner and file is None else None
    patterns: tuple[str, ...] = ()
    if file is None:
        patterns = _default_patterns(kind, subfolder)
    record = ModelRecord(key=spec, kind=kind, title=spec, hub=hub, repo=repo, revision=revision, file=file,
                         subfolder=subfolder, allow_patterns=patterns)
    return ModelSource(spec, kind, record=record)


def _default_patterns(kind: str, subfolder: str | None) -> tuple[str, ...]:
    """What to fetch from a hub folder: configs, tokenizer and the full-precision safetensors weights only (hub
    repos often also hold .bin, fp16, ONNX and EMA copies that would multiply the download)."""
    prefix = f"{subfolder}/" if subfolder else ""
    if kind == "base_model":
        return tuple(prefix + p for p in ("model_index.json", "*/config.json", "scheduler/*.json", "tokenizer/*",
                                          "unet/diffusion_pytorch_model.safetensors",
                                          "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"))
    if kind == "controlnet":
        return (prefix + "config.json", prefix + "diffusion_pytorch_model.safetensors")
    return (prefix + "*",)
