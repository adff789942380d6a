"""What a user asks for: `GenerateRequest` (text-to-image) and `InpaintRequest` (a face into a template photo).

The CLI and the UI both build these and hand them to the same engine functions. `check()` rejects bad values
before any model is loaded, with one sentence naming the argument, the value and what is allowed. Requests are
plain data (JSON-able through `to_dict`), which is also what a PNG's metadata stores for `--from-png`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class ModelChoice:
    """Which models to use; `None` picks the default (the adapter that matches the base model)."""

    base_model: str | None = None
    adapter: str | None = None
    face_encoder: str | None = None
    controlnet: str | None = None


@dataclass
class GenerateRequest:
    """Text-to-image with the identity of 1-8 reference photos of one person.

    Args:
        faces: reference photo paths. prompt / negative_prompt: what to draw and avoid.
        seed: the first image's seed (image i uses seed + i); `None` picks one at random (reported back).
        steps, cfg, scheduler: sampling (see `schedulers.SCHEDULERS`).
        width, height: multiples of 8 in [256, 1024].
        face_strength: FACT's `s` (0 = the base model exactly; release: 0.5).
        face_delay_steps: the first k steps run at `s = 0` (FACT's "delayed face condition").
        face_cfg: the negative CFG branch gets the "no face" embedding (release default) instead of the face.
        lora, lora_scale: a style LoRA `.safetensors` and its multiplier.
        pose, pose_mode, pose_strength: an OpenPose ControlNet conditioned on a photo's pose (or a skeleton image).
    """

    faces: list[str]
    prompt: str
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    seed: int | None = None
    steps: int = 30
    cfg: float = 7.0
    width: int = 512
    height: int = 512
    num_images: int = 1
    face_strength: float = 0.5
    face_delay_steps: int = 0
    face_cfg: bool = True
    scheduler: str = DEFAULT_SCHEDULER
    lora: str | None = None
    lora_scale: float = 0.8
    pose: str | None = None
    pose_mode: str = "auto"
    pose_strength: float = 1.0
    models: ModelChoice = field(default_factory=ModelChoice)

    mode = "generate"

    def check(self) -> None:
        """Raise `InvalidRequestError` for the first bad value; normalise the scheduler name."""
        if not self.faces:
            raise InvalidRequestError("Give at least one reference photo of the face (--face).")
        if len(self.faces) > MAX_REFERENCE_PHOTOS:
            raise InvalidRequestError(
                f"Give at most {MAX_REFERENCE_PHOTOS} reference photos; got {len(self.faces)}."
            )
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise InvalidRequestError("The prompt is empty; describe the portrait you want (--prompt).")
        _check_int("seed", self.seed, 0, MAX_SEED, optional=True)
        _check_int("steps", self.steps, 1, 150)
        _check_float("cfg", self.cfg, 0.0, 30.0)
        for name in ("width", "height"):
            value = getattr(self, name)
            _check_int(name, value, MIN_SIDE, MAX_SIDE)
            if value % 8:
                raise InvalidRequestError(
                    f"`{name}` must be a multiple of 8 between {MIN_SIDE} and {MAX_SIDE}; got {value} "
                    f"(try {max(MIN_SIDE, value - value % 8)})."
                )
        _check_int("num_images", self.num_images, 1, MAX_IMAGES)
        _check_float("face_strength", self.face_strength, 0.0, 2.0)
        _check_int("face_delay_steps", self.face_delay_steps, 0, self.steps)
        _check_float("lora_scale", self.lora_scale, -2.0, 2.0)
        _check_float("pose_strength", self.pose_strength, 0.0, 2.0)
        if self.pose_mode not in POSE_MODES:
            raise InvalidRequestError(f"`pose_mode` must be one of {', '.join(POSE_MODES)}; got {self.pose_mode!r}.")
        self.scheduler = scheduler_key(self.scheduler)

    @property
    def uses_pose(self) -> bool:
        return self.pose is not None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mode"] = self.mode
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerateRequest:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["models"] = ModelChoice(**{k: v for k, v in dict(data.get("models") or {}).items()
                                          if k in {f.name for f in dataclasses.fields(ModelChoice)}})
        return cls(**values)


@dataclass
class InpaintRequest(GenerateRequest):
    """Put the reference identity into face number `face_index` of a template photo.

    Args:
        image: the template photo. mask: `auto`/`face` (the face region), `head` (face and hair) or a mask image
            path (white = repaint). face_index: which face of the template (0 = largest).
        denoise: how much of the masked area is redrawn (release: 0.6). mask_dilate_px / mask_feather_px: grow and
            soften the automatic mask (`None` scales them with the face).
        width, height: the working resolution of the crop around the mask (the result keeps the template's size).
    """

    image: str = ""
    mask: str = "auto"
    face_index: int = 0
    denoise: float = 0.6
    face_strength: float = 0.55
    mask_dilate_px: int | None = None
    mask_feather_px: int | None = None
    prompt: str = "a photo of a person, high quality, detailed face"

    mode = "inpaint"

    def check(self) -> None:
        super().check()
        if not self.image:
            raise InvalidRequestError("Give the template photo to paint the face into (--image).")
        _check_int("face_index", self.face_index, 0, 1000)
        _check_float("denoise", self.denoise, 0.01, 1.0)
        _check_int("mask_dilate_px", self.mask_dilate_px, 0, 512, optional=True)
        _check_int("mask_feather_px", self.mask_feather_px, 0, 512, optional=True)

    @property
    def mask_region(self) -> str | None:
        """`face` or `head` for an automatic mask, `None` when `mask` is a file."""
        if self.mask in MASK_REGIONS:
            return "face" if self.mask == "auto" else self.mask
        return None


def _check_int(name: str, value: Any, low: int, high: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequestError(f"`{name}` must be a whole number from {low} to {high}; got {value!r}.")


def _check_float(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise InvalidRequestError(f"`{name}` must be a number from {low:g} to {high:g}; got {value!r}.")
