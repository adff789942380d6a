"""The `recipe` of a request: `single` (the studio's one-pass pipelines, unchanged) and `release` (FACT.md §6)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from tests.engine.conftest import pixels
from tests.engine.test_inpaint import group_photo, inpaint_request  # noqa: F401  (fixture reused)


def digest(image: Image.Image) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels(image)).tobytes()).hexdigest()[:16]


# Digests of the studio's output computed on main (817ef34) BEFORE recipes existed, on this CPU: `single` must keep
# giving these pixels. (CPU-specific like diffusers' expected slices; regenerate only if the tiny models change.)
SINGLE_TXT2IMG = "53a514f580ba6cbe"
SINGLE_INPAINT = "49dd5593fda33b4e"


def test_single_text_to_image_is_unchanged(engine, tiny_request):
    image = engine.generate(tiny_request(seed=3, steps=2)).images[0].image
    assert digest(image) == SINGLE_TXT2IMG


def test_single_inpainting_is_unchanged(engine, tiny_request, group_photo):  # noqa: F811
    template_path, _ = group_photo
    request = inpaint_request(tiny_request, template_path, steps=2, seed=3, face_index=1)
    image = engine.inpaint(request).images[0].image
    assert digest(image) == SINGLE_INPAINT
