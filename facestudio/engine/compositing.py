"""Inpainting geometry: a crop around the mask at the working resolution, and the paste back.

Working on a crop is what makes a 12-megapixel group photo cost what a 512x512 one does, and gives a small face
the model's full resolution. The paste back blends with the (feathered) mask, so every pixel where the mask is 0
comes back from the template unchanged, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from facestudio.errors import InvalidRequestError

# How much context around the mask the crop keeps (the crop spans this many mask widths/heights).
CONTEXT = 2.0
MIN_CROP_SIDE = 64


@dataclass(frozen=True)
class CropBox:
    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.right, self.bottom)


def mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask > 0)
    if len(xs) == 0:
        raise InvalidRequestError("The inpainting mask is empty; nothing would change.")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def crop_around_mask(mask: np.ndarray, aspect: float, context: float = CONTEXT) -> CropBox:
    """The box, inside the image, around the mask's bounds grown `context` times, with the working aspect ratio
    (width / height) where the image allows it."""
    height, width = mask.shape
    x0, y0, x1, y1 = mask_bounds(mask)
    box_w = max((x1 - x0) * context, (y1 - y0) * context * aspect, MIN_CROP_SIDE)
    box_h = box_w / aspect
    if box_w > width:
        box_w, box_h = width, width / aspect
    if box_h > height:
        box_w, box_h = height * aspect, height
    box_w, box_h = max(1, round(box_w)), max(1, round(box_h))
    # Keep the whole mask even if that breaks the aspect ratio (a mask wider than the image's aspect allows).
    box_w = min(width, max(box_w, x1 - x0))
    box_h = min(height, max(box_h, y1 - y0))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(min(max(0, round(cx - box_w / 2)), width - box_w))
    top = int(min(max(0, round(cy - box_h / 2)), height - box_h))
    return CropBox(left, top, left + box_w, top + box_h)


def working_size(box: CropBox, width: int, height: int) -> tuple[int, int]:
    """The working resolution: the requested pixel count, in the crop's aspect ratio, sides multiples of 8."""
    if box.width * height == box.height * width:
        return width, height
    scale = math.sqrt(width * height / (box.width * box.height))
    return max(8, round(box.width * scale / 8) * 8), max(8, round(box.height * scale / 8) * 8)


def paste_back(template: Image.Image, generated: Image.Image, alpha: np.ndarray, box: CropBox) -> Image.Image:
    """The template with the generated crop blended in by `alpha` (`float[H, W]` in [0, 1], template size)."""
    original = np.asarray(template.convert("RGB"))
    result = original.copy()
    patch = np.asarray(generated.convert("RGB").resize((box.width, box.height), Image.Resampling.LANCZOS),
                       dtype=np.float32)
    weight = alpha[box.top : box.bottom, box.left : box.right, None].astype(np.float32)
    region = original[box.top : box.bottom, box.left : box.right].astype(np.float32)
    blended = region * (1.0 - weight) + patch * weight
    result[box.top : box.bottom, box.left : box.right] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    # Exactly the template where the mask is 0 (no rounding drift, whatever the blend above computed).
    keep = alpha <= 0
    result[keep] = original[keep]
    return Image.fromarray(result)
