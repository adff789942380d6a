"""The files a request names, opened before anything slow: a missing or broken reference photo, pose photo,
template or mask is one sentence at once, not after the hub was asked for model sizes or a model was loaded
(diffusers' `check_inputs` stage, done for files)."""

from __future__ import annotations

from pathlib import Path

from facestudio.config import DEFAULT_MAX_PIXELS
from facestudio.engine.registry import is_hub_reference
from facestudio.engine.requests import MASK_REGIONS, GenerateRequest
from facestudio.errors import InvalidRequestError
from facestudio.face import load_image


def check_input_files(request: GenerateRequest, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Open every image `request` names (size and bomb limits included) and check that a LoRA file exists; raise
    the loader's `ImageLoadError` (or `InvalidRequestError` for the LoRA), naming the file."""
    images = list(request.faces)
    if request.pose:
        images.append(request.pose)
    template = getattr(request, "image", None)
    if template:
        images.append(template)
    mask = getattr(request, "mask", None)
    if mask and mask not in MASK_REGIONS:
        images.append(mask)
    for path in images:
        load_image(path, max_pixels=max_pixels)
    lora = request.lora
    if lora and not is_hub_reference(lora) and not Path(lora).is_file():
        raise InvalidRequestError(f"The LoRA file {lora} does not exist.", field="lora")
