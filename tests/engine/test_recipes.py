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


# -- the release inpainting recipe ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def canny_nets(tiny_studio, tmp_path_factory):
    """Two tiny Canny ControlNets from the tiny UNet, with non-zero output convolutions (else they do nothing)."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_studio.base / "unet").eval()
    folders = []
    for seed in (11, 12):
        torch.manual_seed(seed)
        net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8))
        with torch.no_grad():
            for module in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]:
                module.weight.normal_(0, 0.3)
        folder = tmp_path_factory.mktemp(f"canny{seed}")
        net.save_pretrained(folder)
        folders.append(str(folder))
    return folders


def release_request(tiny_request, template, canny, **overrides):
    import dataclasses

    request = inpaint_request(tiny_request, template, recipe="release", steps=2, denoise=0.6, face_strength=0.55,
                              **overrides)
    return dataclasses.replace(request, models=dataclasses.replace(request.models, canny_controlnet=canny))


def test_release_inpainting_changes_only_the_chosen_face(engine, tiny_request, group_photo, canny_nets, tmp_path):  # noqa: F811
    from tests.engine.conftest import into_home

    template_path, boxes = into_home(engine, group_photo[0]), group_photo[1]
    template = Image.open(template_path).convert("RGB")
    request = release_request(tiny_request, template_path, canny_nets[0], face_index=1, seed=5)
    made = engine.inpaint(request, out_dir=tmp_path).images[0]
    assert made.image.size == template.size
    record = made.record
    assert record.request.recipe == "release"
    assert [s["stage"][0] for s in record.stages] == ["1", "3", "4", "5", "5", "6"]
    assert record.models["canny_controlnet"]["spec"] == canny_nets[0]
    changed = np.any(pixels(made.image) != pixels(template), axis=-1)
    assert changed.any()
    face_box = record.template_face_bbox
    inside = [i for i, b in enumerate(boxes) if b[0] <= face_box[0] and face_box[2] <= b[2]]
    assert len(inside) == 1
    other = boxes[1 - inside[0]]
    assert not changed[other[1] : other[3], other[0] : other[2]].any(), "the other person must be untouched"
    x0, y0, x1, y1 = (int(v) for v in face_box)
    assert changed[y0:y1, x0:x1].mean() > 0.3
    # Every change lies inside the square crop (pixels outside the paste mask are the template's own).
    left, top, right, bottom = record.crop_box
    ys, xs = np.nonzero(changed)
    assert left <= xs.min() and xs.max() < right and top <= ys.min() and ys.max() < bottom

    again = engine.regenerate(made.path, faces=list(request.faces), models=request.models).images[0]
    assert np.array_equal(pixels(made.image), pixels(again.image)), "regenerates bit for bit from its PNG"

    other_canny = engine.inpaint(release_request(tiny_request, template_path, canny_nets[1], face_index=1,
                                                 seed=5)).images[0]
    assert not np.array_equal(pixels(made.image), pixels(other_canny.image)), "the Canny ControlNet is used"


def test_release_recipe_refuses_a_mask_file_and_unknown_recipes(tiny_request, group_photo):  # noqa: F811
    from facestudio.errors import InvalidRequestError

    template_path, _ = group_photo
    with pytest.raises(InvalidRequestError, match="needs the single recipe") as err:
        inpaint_request(tiny_request, template_path, recipe="release", mask="head").checked()
    assert err.value.field == "mask"
    with pytest.raises(InvalidRequestError, match="`recipe` must be one of release, single; got 'best'") as err:
        inpaint_request(tiny_request, template_path, recipe="best").checked()
    assert err.value.field == "recipe"
    with pytest.raises(InvalidRequestError, match="`recipe`"):
        tiny_request(recipe="fast").checked()


def test_release_text_to_image_defaults_are_the_facechain_release_preset():
    from facestudio.data import assets_dir, presets_dir
    from facestudio.engine.presets import load_presets
    from facestudio.engine.requests import GenerateRequest, InpaintRequest, field_default, recipe_defaults

    presets, _ = load_presets(presets_dir(), assets_dir())
    preset = next(p for p in presets if p.key == "facechain-release")
    applied = preset.apply(GenerateRequest(faces=("a.png",), prompt="x", face_delay_steps=3, scheduler="euler"))
    release = recipe_defaults(GenerateRequest, "release")
    assert release["scheduler"] == "pndm" and release["steps"] == 50 and release["cfg"] == 7.0
    for name in ("scheduler", "steps", "cfg", "width", "height", "face_strength"):
        assert getattr(applied, name) == release[name], name
    assert (applied.lora, applied.lora_scale) == ("portrait-lora", 0.25)  # the release's default style LoRA
    assert recipe_defaults(GenerateRequest, "single")["steps"] == field_default(GenerateRequest, "steps") == 30
    assert recipe_defaults(InpaintRequest, "release")["steps"] == field_default(InpaintRequest, "steps")
    assert field_default(InpaintRequest, "recipe") == "release" and field_default(GenerateRequest, "recipe") == "single"


def test_old_records_without_a_recipe_regenerate_with_the_single_recipe():
    from facestudio.engine.metadata import GenerationRecord
    from facestudio.engine.requests import InpaintRequest

    request = InpaintRequest(faces=("a.png",), image="t.png", seed=1, recipe="single")
    data = GenerationRecord(request=request, image_index=0, width=8, height=8, scheduler_title="x", models={},
                            references=(), device="cpu", dtype="fp32").to_dict()
    del data["request"]["recipe"]
    assert GenerationRecord.from_dict(data).request.recipe == "single"
    data["request"]["recipe"] = "release"
    assert GenerationRecord.from_dict(data).request.recipe == "release"
