"""Inpainting with identity: the chosen face changes, everything outside the (feathered) mask stays bit-identical,
and only a crop around the mask is processed at the working resolution."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facestudio.engine.compositing import CropBox, crop_around_mask, paste_back, working_size
from facestudio.errors import FaceNotFoundError, InvalidRequestError
from tests.engine.conftest import pixels


@pytest.fixture(scope="module")
def group_photo(tmp_path_factory, faces_dir) -> tuple[str, list[tuple[int, int, int, int]]]:
    """Two people side by side on a large canvas; returns the path and where each photo was pasted."""
    canvas = Image.new("RGB", (1800, 1000), (128, 128, 128))
    boxes = []
    for index, name in enumerate(("obama.jpg", "obama2.jpg")):
        photo = Image.open(faces_dir / name).convert("RGB")
        photo.thumbnail((700, 900))
        left = 100 + index * 900
        canvas.paste(photo, (left, 50))
        boxes.append((left, 50, left + photo.width, 50 + photo.height))
    path = tmp_path_factory.mktemp("templates") / "group.png"
    canvas.save(path)
    return str(path), boxes


def inpaint_request(tiny_request, template, **overrides):
    from facestudio.engine import InpaintRequest

    base = tiny_request()
    fields = {k: getattr(base, k) for k in ("faces", "negative_prompt", "seed", "steps", "width", "height", "models")}
    fields.update(image=template, prompt="a portrait photo", steps=4, denoise=0.75, face_strength=0.8, recipe="single")
    fields.update(overrides)
    return InpaintRequest(**fields)


def test_inpaint_changes_the_chosen_face_and_keeps_every_other_pixel(engine, tiny_request, group_photo, tmp_path):
    template_path, boxes = group_photo
    template = Image.open(template_path).convert("RGB")
    result = engine.inpaint(inpaint_request(tiny_request, template_path, face_index=1), out_dir=tmp_path)
    image = result.images[0]
    assert image.image.size == template.size
    record = image.record
    left, top, right, bottom = record.crop_box
    assert record.working_size == (256, 256) and right - left == bottom - top
    changed = np.any(pixels(image.image) != pixels(template), axis=-1)
    assert changed.any()
    ys, xs = np.nonzero(changed)
    # Every change lies in the crop around the chosen face; the other person is untouched.
    assert left <= xs.min() and xs.max() < right and top <= ys.min() and ys.max() < bottom
    face_box = record.template_face_bbox
    inside = [i for i, b in enumerate(boxes) if b[0] <= face_box[0] and face_box[2] <= b[2]]
    assert len(inside) == 1
    other = boxes[1 - inside[0]]
    assert not changed[other[1] : other[3], other[0] : other[2]].any(), "the other person must be untouched"
    assert changed[int(face_box[1]) : int(face_box[3]), int(face_box[0]) : int(face_box[2])].mean() > 0.5
    assert record.mode == "inpaint" and record.template.sha256


def test_inpaint_result_regenerates_bit_for_bit(engine, tiny_request, group_photo, tmp_path):
    from tests.engine.conftest import into_home

    template_path = into_home(engine, group_photo[0])  # the template kept in the home; photos and models named again
    request = inpaint_request(tiny_request, template_path, seed=5)
    made = engine.inpaint(request, out_dir=tmp_path).images[0]
    again = engine.regenerate(made.path, faces=list(request.faces), models=request.models).images[0]
    assert np.array_equal(pixels(made.image), pixels(again.image))


def test_given_mask_file_limits_the_change(engine, tiny_request, group_photo, tmp_path):
    template_path, _ = group_photo
    template = Image.open(template_path).convert("RGB")
    mask = np.zeros((template.height, template.width), np.uint8)
    mask[300:500, 1200:1400] = 255
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    image = engine.inpaint(inpaint_request(tiny_request, template_path, mask=str(mask_path))).images[0]
    changed = np.any(pixels(image.image) != pixels(template), axis=-1)
    assert changed[300:500, 1200:1400].mean() > 0.5
    outside = changed.copy()
    outside[300:500, 1200:1400] = False
    assert not outside.any()
    assert image.record.mask_file.sha256


def test_mask_with_another_shape_is_refused(engine, tiny_request, group_photo, tmp_path):
    template_path, _ = group_photo
    mask_path = tmp_path / "square.png"
    Image.new("L", (500, 500), 255).save(mask_path)
    with pytest.raises(InvalidRequestError, match=r"square.png is 500x500 but the template is 1800x1000"):
        engine.inpaint(inpaint_request(tiny_request, template_path, mask=str(mask_path)))


def test_face_index_beyond_the_faces_found_is_a_clear_error(engine, tiny_request, group_photo):
    template_path, _ = group_photo
    with pytest.raises(FaceNotFoundError, match=r"group.png has 2 face"):
        engine.inpaint(inpaint_request(tiny_request, template_path, face_index=5))


def test_crop_keeps_aspect_context_and_stays_inside_the_image():
    mask = np.zeros((3000, 4000), np.float32)
    mask[1000:1100, 3900:3990] = 1.0
    box = crop_around_mask(mask, aspect=1.0)
    assert box.width == box.height == 200
    assert box.left >= 0 and box.right <= 4000 and box.left <= 3900 and box.right >= 3990
    wide = crop_around_mask(mask, aspect=768 / 512)
    assert abs(wide.width / wide.height - 1.5) < 0.01
    assert working_size(CropBox(0, 0, 300, 200), 768, 512) == (768, 512)
    w, h = working_size(CropBox(0, 0, 300, 250), 512, 512)
    assert w % 8 == 0 and h % 8 == 0 and abs(w / h - 1.2) < 0.05


def test_crop_of_a_mask_larger_than_the_aspect_allows_keeps_the_whole_mask():
    mask = np.zeros((400, 1000), np.float32)
    mask[100:300, 50:950] = 1.0
    box = crop_around_mask(mask, aspect=1.0)
    assert box.left <= 50 and box.right >= 950 and box.top <= 100 and box.bottom >= 300


def test_empty_mask_is_refused():
    with pytest.raises(InvalidRequestError, match="mask is empty"):
        crop_around_mask(np.zeros((10, 10), np.float32), 1.0)


def test_paste_back_is_exact_outside_the_mask_and_blends_inside():
    rng = np.random.default_rng(0)
    template = Image.fromarray(rng.integers(0, 256, (100, 120, 3), dtype=np.uint8))
    alpha = np.zeros((100, 120), np.float32)
    alpha[40:60, 50:70] = 1.0
    alpha[38:40, 50:70] = 0.5
    box = CropBox(30, 20, 90, 80)
    generated = Image.new("RGB", (256, 256), (255, 0, 0))
    out = np.asarray(paste_back(template, generated, alpha, box))
    original = np.asarray(template)
    assert np.array_equal(out[alpha == 0], original[alpha == 0])
    assert (out[45, 55] == [255, 0, 0]).all()
    half = out[39, 55].astype(int)
    assert abs(half[0] - (int(original[39, 55, 0]) + 255) / 2) <= 1
