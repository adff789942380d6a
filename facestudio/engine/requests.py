"""What a user asks for: `GenerateRequest` (text-to-image) and `InpaintRequest` (a face into a template photo).

The CLI and the UI both build these and hand them to the same engine functions, and both take their defaults and
bounds from here (`field_default`, `field_bounds`): a default lives in its field, nowhere else. Requests are frozen:
a changed request is a new one (`dataclasses.replace`), so the engine never changes what its caller holds.
`checked()` rejects bad values before any model is loaded, with one sentence naming the field (`err.field`), the
value and what is allowed; each front words the field its own way (a flag, a control's label).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from facestudio.engine.schedulers import DEFAULT_SCHEDULER, scheduler_key
from facestudio.errors import InvalidRequestError

MIN_SIDE, MAX_SIDE = 256, 1024
MAX_REFERENCE_PHOTOS = 8
MAX_IMAGES = 16
MAX_SEED = 2**32 - 1
DEFAULT_NEGATIVE_PROMPT = (
    "lowres, blurry, out of focus, deformed face, distorted eyes, bad anatomy, extra fingers, watermark, text"
)
POSE_MODES = ("auto", "photo", "skeleton")
MASK_REGIONS = ("auto", "face", "head")
#: `release`: the FACT release's pipelines (FACT.md §6); `single`: the studio's one-pass pipelines.
RECIPES = ("release", "single")
#: Face fix after text-to-image: `auto` fixes faces whose box is under `FACE_FIX_AUTO_SHARE` of the image's shorter
#: side (small faces, full-body shots: where text-to-image loses the likeness), `on` every face, `off` none.
FACE_FIX_MODES = ("auto", "on", "off")
FACE_FIX_AUTO_SHARE = 0.4
#: The face fix's FACT strength: the release's inpainting strength (FACT.md §6).
FACE_FIX_STRENGTH = 0.55
MAX_BEST_OF = 16
MAX_ASSIGNMENTS = 16

_BOUNDS = "bounds"
_R = TypeVar("_R", bound="GenerateRequest")
_I = TypeVar("_I", bound="InpaintRequest")


def _bounded(default: Any, low: float, high: float) -> Any:
    """A field with its allowed range, which `checked()` enforces and fronts read for their sliders."""
    return field(default=default, metadata={_BOUNDS: (low, high)})


@dataclass(frozen=True)
class ModelChoice:
    """Which models to use; `None` picks the default (the adapter that matches the base model)."""

    base_model: str | None = None
    adapter: str | None = None
    face_encoder: str | None = None
    controlnet: str | None = None  # the OpenPose ControlNet (`--pose-controlnet`, alias `--controlnet`)
    canny_controlnet: str | None = None  # the Canny ControlNet of the release's inpainting recipe

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ModelChoice:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(data or {}).items() if k in names})


@dataclass(frozen=True)
class GenerateRequest:
    """Text-to-image with the identity of 1-8 reference photos of one person.

    Args:
        faces: reference photo paths (stored as a tuple). prompt / negative_prompt: what to draw and avoid.
        seed: the first image's seed (image i uses seed + i); `None` picks one at random (reported back).
        steps, cfg, scheduler: sampling (see `schedulers.SCHEDULERS`).
        width, height: multiples of 8 in [256, 1024].
        face_strength: FACT's `s` (0 = the base model exactly; release: 0.5).
        face_delay_steps: the first k steps run at `s = 0` (FACT's "delayed face condition").
        face_cfg: the negative CFG branch gets the "no face" embedding (release default) instead of the face.
        lora, lora_scale: a style LoRA `.safetensors` and its multiplier.
        pose, pose_mode, pose_strength: an OpenPose ControlNet conditioned on a photo's pose (or a skeleton image).
        recipe: `single` (the studio's one pipeline call per image) or `release` (the FACT release's pipeline,
            FACT.md §6; its text-to-image defaults are `RELEASE_TEXT_TO_IMAGE`, the "FaceChain release" preset).
        best_of, keep: make `best_of` candidates (seeds seed..seed+best_of-1), keep the `keep` most alike (by
            identity score; a candidate without a face ranks last). With `best_of` > 1, `num_images` must be 1.
        face_fix: `auto` (faces under 40% of the shorter side), `on` (every face) or `off`: after text-to-image, each
            such face is inpainted again on a crop with FACT (strength `FACE_FIX_STRENGTH`) at `face_fix_denoise`.
    """

    faces: tuple[str, ...]
    prompt: str
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    seed: int | None = _bounded(None, 0, MAX_SEED)
    steps: int = _bounded(30, 1, 150)
    cfg: float = _bounded(7.0, 0.0, 30.0)
    width: int = _bounded(512, MIN_SIDE, MAX_SIDE)
    height: int = _bounded(512, MIN_SIDE, MAX_SIDE)
    num_images: int = _bounded(1, 1, MAX_IMAGES)
    face_strength: float = _bounded(0.5, 0.0, 2.0)
    face_delay_steps: int = _bounded(0, 0, 150)
    face_cfg: bool = True
    scheduler: str = DEFAULT_SCHEDULER
    lora: str | None = None
    lora_scale: float = _bounded(0.8, -2.0, 2.0)
    pose: str | None = None
    pose_mode: str = "auto"
    pose_strength: float = _bounded(1.0, 0.0, 2.0)
    models: ModelChoice = field(default_factory=ModelChoice)
    recipe: str = "single"
    best_of: int = _bounded(1, 1, MAX_BEST_OF)
    keep: int = _bounded(1, 1, MAX_BEST_OF)
    face_fix: str = "auto"
    face_fix_denoise: float = _bounded(0.4, 0.01, 1.0)

    mode: ClassVar[str] = "generate"

    def __post_init__(self) -> None:
        # Accept any sequence of paths; keep an immutable tuple of strings.
        faces = (self.faces,) if isinstance(self.faces, str) else self.faces
        object.__setattr__(self, "faces", tuple(str(face) for face in faces or ()))

    def checked(self: _R) -> _R:
        """This request with the scheduler's canonical name, or `InvalidRequestError` for the first bad value."""
        if self.recipe not in RECIPES:
            raise InvalidRequestError(f"`recipe` must be one of {', '.join(RECIPES)}; got {self.recipe!r}.",
                                      field="recipe")
        if not self.faces:
            raise InvalidRequestError("Give at least one reference photo of the face.", field="faces")
        if len(self.faces) > MAX_REFERENCE_PHOTOS:
            raise InvalidRequestError(
                f"Give at most {MAX_REFERENCE_PHOTOS} reference photos; got {len(self.faces)}.", field="faces")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise InvalidRequestError("The prompt is empty; describe the portrait you want.", field="prompt")
        for spec in dataclasses.fields(self):
            if _BOUNDS in spec.metadata:
                optional = "None" in str(spec.type)  # `int | None`: None means "pick for me"
                _check_bounds(spec.name, getattr(self, spec.name), *spec.metadata[_BOUNDS], optional=optional)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value % 8:
                raise InvalidRequestError(
                    f"`{name}` must be a multiple of 8 between {MIN_SIDE} and {MAX_SIDE}; got {value} "
                    f"(try {max(MIN_SIDE, value - value % 8)}).", field=name)
        if self.face_delay_steps > self.steps:
            raise InvalidRequestError(f"`face_delay_steps` must be at most the number of steps ({self.steps}); got "
                                      f"{self.face_delay_steps}.", field="face_delay_steps")
        if self.pose_mode not in POSE_MODES:
            raise InvalidRequestError(f"`pose_mode` must be one of {', '.join(POSE_MODES)}; got {self.pose_mode!r}.",
                                      field="pose_mode")
        if self.face_fix not in FACE_FIX_MODES:
            raise InvalidRequestError(f"`face_fix` must be one of {', '.join(FACE_FIX_MODES)}; got "
                                      f"{self.face_fix!r}.", field="face_fix")
        if self.keep > self.best_of:
            raise InvalidRequestError(f"`keep` must be at most `best_of` ({self.best_of}); got {self.keep}.",
                                      field="keep")
        if self.best_of > 1 and self.num_images != 1:
            raise InvalidRequestError(f"`best_of` {self.best_of} makes its own candidates; leave `num_images` at 1 "
                                      f"and say how many to save with `keep` (got {self.num_images} images).",
                                      field="best_of")
        return dataclasses.replace(self, scheduler=scheduler_key(self.scheduler))

    @property
    def uses_pose(self) -> bool:
        return self.pose is not None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["faces"] = list(self.faces)
        data["mode"] = self.mode
        return data

    @classmethod
    def from_dict(cls: type[_R], data: dict[str, Any]) -> _R:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["models"] = ModelChoice.from_dict(data.get("models"))
        if "assignments" in values:
            values["assignments"] = tuple(FaceAssignment.from_dict(entry) for entry in values["assignments"] or ())
        return cls(**values)


@dataclass(frozen=True)
class FaceAssignment:
    """One face of a template and the person painted into it: reference photos, and the saved identity they came
    from (for the record; `faces` are what is used)."""

    face_index: int
    faces: tuple[str, ...]
    identity: str = ""

    def __post_init__(self) -> None:
        faces = (self.faces,) if isinstance(self.faces, str) else self.faces
        object.__setattr__(self, "faces", tuple(str(face) for face in faces or ()))

    @classmethod
    def from_dict(cls, data: Any) -> FaceAssignment:
        if not isinstance(data, dict):
            raise InvalidRequestError(f"A face assignment must be an object; got {type(data).__name__}.",
                                      field="assignments")
        return cls(int(data["face_index"]), tuple(data.get("faces") or ()), str(data.get("identity") or ""))


@dataclass(frozen=True)
class InpaintRequest(GenerateRequest):
    """Put the reference identity into face number `face_index` of a template photo.

    Args:
        image: the template photo. mask: `auto`/`face` (the face region), `head` (face and hair) or a mask image
            path (white = repaint). face_index: which face of the template (0 = largest).
        denoise: how much of the masked area is redrawn (release: 0.6). mask_dilate_px / mask_feather_px: grow and
            soften the automatic mask (`None` scales them with the face).
        width, height: the working resolution of the crop around the mask (the result keeps the template's size);
            the `release` recipe works on a square crop of side min(width, height).
        recipe: `release` (default: the FACT release's two-stage ControlNet inpainting, FACT.md §6) or `single`
            (one inpainting call on a crop around the mask, the studio's pipeline before recipes existed).
    """

    image: str = ""
    mask: str = "auto"
    face_index: int = _bounded(0, 0, 1000)
    denoise: float = _bounded(0.6, 0.01, 1.0)
    face_strength: float = _bounded(0.55, 0.0, 2.0)
    mask_dilate_px: int | None = _bounded(None, 0, 512)
    mask_feather_px: int | None = _bounded(None, 0, 512)
    prompt: str = "a photo of a person, high quality, detailed face"
    recipe: str = "release"
    face_fix: str = "off"  # inpainting already works on the face's crop
    assignments: tuple[FaceAssignment, ...] = ()

    mode: ClassVar[str] = "inpaint"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "assignments", tuple(
            a if isinstance(a, FaceAssignment) else FaceAssignment.from_dict(a) for a in self.assignments or ()))

    def checked(self: _I) -> _I:
        if self.recipe not in RECIPES:
            raise InvalidRequestError(f"`recipe` must be one of {', '.join(RECIPES)}; got {self.recipe!r}.",
                                      field="recipe")
        if not self.image:
            raise InvalidRequestError("Give the template photo to paint the face into.", field="image")
        if self.recipe == "single" and _is_number(self.steps) and _is_number(self.denoise) \
                and 0 < self.denoise <= 1 and int(self.steps * self.denoise) < 1:
            raise InvalidRequestError(f"`denoise` {self.denoise:g} runs no step of {self.steps}; raise `denoise` or "
                                      f"`steps` (at least {math.ceil(1 / self.denoise)}).", field="denoise")
        if self.assignments:
            return self._checked_assignments()
        if self.recipe == "release" and self.mask not in ("auto", "face"):
            raise InvalidRequestError(f"`mask` {self.mask!r} needs the single recipe; the release recipe masks the "
                                      "face by its own rule.", field="mask")
        return super().checked()

    def _checked_assignments(self: _I) -> _I:
        """Several people: each assigned face gets its own photos; the shared settings are checked as usual."""
        seen: set[int] = set()
        for assignment in self.assignments:
            index = assignment.face_index
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 1000:
                raise InvalidRequestError(f"`assignments` face numbers must be whole numbers from 0 to 1000; got "
                                          f"{index!r}.", field="assignments")
            if index in seen:
                raise InvalidRequestError(f"`assignments` names face {index} twice; give each face one person.",
                                          field="assignments")
            seen.add(index)
            if not assignment.faces:
                raise InvalidRequestError(f"`assignments` gives face {index} no reference photo.",
                                          field="assignments")
            if len(assignment.faces) > MAX_REFERENCE_PHOTOS:
                raise InvalidRequestError(f"`assignments` gives face {index} {len(assignment.faces)} photos; at most "
                                          f"{MAX_REFERENCE_PHOTOS} per person.", field="assignments")
        if self.mask not in ("auto", "face", "head"):
            raise InvalidRequestError("Several people need an automatic `mask` (auto, face or head), one per face.",
                                      field="mask")
        if len(self.assignments) > MAX_ASSIGNMENTS:
            raise InvalidRequestError(f"`assignments` lists {len(self.assignments)} faces; at most {MAX_ASSIGNMENTS}.",
                                      field="assignments")
        # The shared checks want reference photos; the first person's stand in (each face uses its own).
        first = dataclasses.replace(self, faces=self.assignments[0].faces, assignments=())
        checked = GenerateRequest.checked(first)
        return dataclasses.replace(checked, faces=self.faces, assignments=self.assignments)

    @property
    def mask_region(self) -> str | None:
        """`face` or `head` for an automatic mask, `None` when `mask` is a file."""
        if self.mask in MASK_REGIONS:
            return "face" if self.mask == "auto" else self.mask
        return None


#: What the `release` recipe's text-to-image uses (FACT.md §6): PNDM from the base model's scheduler config, 50 steps,
#: CFG 7, 512x512, s = 0.5, face CFG on, no delay. Fronts apply these when the user picks the recipe; the built-in
#: "FaceChain release" preset carries the same values.
RELEASE_TEXT_TO_IMAGE: dict[str, Any] = {
    "scheduler": "pndm", "steps": 50, "cfg": 7.0, "width": 512, "height": 512, "face_strength": 0.5,
    "face_cfg": True, "face_delay_steps": 0,
}


#: The release shrinks each reference photo so its longer side is at most this many pixels (PIL's default resize)
#: before parsing and alignment (FACT.md §1 step 0), per mode. The `single` recipe keeps the photo as it is.
RELEASE_REFERENCE_SIDE = {"generate": 1000, "inpaint": 2000}


def reference_max_side(request: GenerateRequest) -> int | None:
    """The longest side the request's reference photos are shrunk to before analysis (`None`: not shrunk)."""
    return RELEASE_REFERENCE_SIDE[request.mode] if request.recipe == "release" else None


def recipe_defaults(request_class: type[GenerateRequest], recipe: str) -> dict[str, Any]:
    """The field values a front shows for `recipe`: the fields' defaults, and for text-to-image `release` the
    release's sampling (`RELEASE_TEXT_TO_IMAGE`)."""
    names = ("scheduler", "steps", "cfg", "width", "height", "face_strength", "face_cfg", "face_delay_steps")
    values = {name: field_default(request_class, name) for name in names}
    if recipe == "release" and request_class.mode == "generate":
        values.update(RELEASE_TEXT_TO_IMAGE)
    return values


def field_default(request_class: type[GenerateRequest], name: str) -> Any:
    """The default of a request field: what every front shows before the user changes it."""
    spec = {f.name: f for f in dataclasses.fields(request_class)}[name]
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    raise KeyError(f"{request_class.__name__}.{name} has no default.")


def field_bounds(request_class: type[GenerateRequest], name: str) -> tuple[float, float]:
    """The allowed (low, high) of a bounded request field."""
    spec = {f.name: f for f in dataclasses.fields(request_class)}[name]
    return spec.metadata[_BOUNDS]


#: "Compare strengths" renders at most this many strengths side by side.
MAX_COMPARED_STRENGTHS = 8


def check_strengths(strengths: Any) -> list[float]:
    """The face strengths of a comparison as floats: 2 to `MAX_COMPARED_STRENGTHS` numbers from 0 to 2, or
    `InvalidRequestError` (field `strengths`). A string is read as comma-separated numbers."""
    if isinstance(strengths, str):
        parts = [part.strip() for part in strengths.replace(";", ",").split(",") if part.strip()]
    else:
        parts = list(strengths)
    values = []
    for part in parts:
        try:
            value = float(part)
        except (TypeError, ValueError):
            raise InvalidRequestError(f"Each face strength must be a number from 0 to 2; got {part!r}.",
                                      field="strengths") from None
        if not math.isfinite(value) or not 0.0 <= value <= 2.0:
            raise InvalidRequestError(f"Each face strength must be a number from 0 to 2; got {value:g}.",
                                      field="strengths")
        values.append(value)
    if not 2 <= len(values) <= MAX_COMPARED_STRENGTHS:
        raise InvalidRequestError(f"Compare 2 to {MAX_COMPARED_STRENGTHS} face strengths; got {len(values)}.",
                                  field="strengths")
    return values


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_bounds(name: str, value: Any, low: float, high: float, *, optional: bool) -> None:
    """Whole numbers for fields whose bounds are ints (seeds, steps, sizes), any finite number otherwise."""
    if value is None and optional:
        return
    whole = isinstance(low, int) and isinstance(high, int)
    if whole:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidRequestError(f"`{name}` must be a whole number from {low} to {high}; got {value!r}.",
                                      field=name)
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise InvalidRequestError(f"`{name}` must be a number from {low:g} to {high:g}; got {value!r}.", field=name)

