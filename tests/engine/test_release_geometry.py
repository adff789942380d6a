"""The release recipe's geometry (FACT.md §6) on the shared photos: square crop, black padding, mask rule, paste."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from facestudio.engine.release import (
    FACE_SHARE,
    MASK_GROW,
    SquareCrop,
    canny_outside,
    grow_face,
    paste_alpha,
    release_template,
)


@pytest.fixture(scope="module")
def biden(analyzer, faces_dir):
    image = Image.open(faces_dir / "biden.jpg").convert("RGB")
    return image, release_template(analyzer, image, 0, "biden.jpg", 256)


def test_crop_is_a_square_of_side_face_over_0_7_centred_on_the_face(biden):
    image, template = biden
    x0, y0, x1, y1 = template.face.bbox
    crop = template.crop
    assert abs(crop.side - max(x1 - x0, y1 - y0) / FACE_SHARE) <= 1
    assert abs(crop.left + crop.side / 2 - (x0 + x1) / 2) <= 1 and abs(crop.top + crop.side / 2 - (y0 + y1) / 2) <= 1
    assert template.crop_image.size == (256, 256)
    bx0, by0, bx1, by1 = template.face_bbox
    assert abs(max(bx1 - bx0, by1 - by0) - FACE_SHARE * 256) <= 2  # the face spans 70% of the working side
    # The crop shows the photo: its centre pixel is the photo's pixel at the face centre (up to resampling).
    centre = np.asarray(template.crop_image, np.int16)[128, 128]
    original = np.asarray(image, np.int16)[int((y0 + y1) / 2), int((x0 + x1) / 2)]
    assert np.abs(centre - original).max() < 40


def test_crop_outside_the_photo_is_black_and_maps_back_exactly():
    image = Image.new("RGB", (300, 200), (200, 180, 160))
    crop = SquareCrop(left=-100, top=-50, side=200, out=100)
    pixels = np.asarray(crop.cut(image))
    assert (pixels[:20, :, :] == 0).all() and (pixels[:, :45, :] == 0).all()  # above and left of the photo
    assert (pixels[40:, 60:] == (200, 180, 160)).all()
    box = crop.inside(300, 200)
    assert box.as_tuple() == (0, 0, 100, 150)
    assert crop.uncut(Image.new("RGB", (100, 100)), 300, 200).size == (100, 150)
    alpha = crop.place(np.ones((100, 100), np.float32), 300, 200)
    assert alpha.shape == (200, 300) and alpha[:150, :100].min() == 1.0 and alpha[150:, :].max() == 0.0


def test_mask_rule_grows_the_face_and_only_below_the_eyes_into_the_new_face(biden):
    _, template = biden
    face, eye_y = template.face_mask, template.eye_y
    warped = np.zeros_like(face)
    warped[eye_y:, :] = True  # a stage-1 face covering everything below the eyes
    grown = grow_face(face, eye_y, MASK_GROW)
    mask = grow_face(face, eye_y, MASK_GROW, 0.1, limit=warped)
    assert (mask >= face).all() and (grown >= face).all()
    side = int(math.sqrt(face.sum()) * MASK_GROW)
    rows = np.nonzero(face.any(1))[0]
    assert np.nonzero(grown.any(1))[0].min() <= rows.min() - side // 2 + 1  # grown all around
    assert np.array_equal(mask[:eye_y], grown[:eye_y]), "above the eye line only the 0.04 growth"
    assert mask[eye_y:].sum() > grown[eye_y:].sum(), "below the eye line it grows further"
    limited = grow_face(face, eye_y, MASK_GROW, 0.1, limit=np.zeros_like(face))
    assert np.array_equal(limited, grown), "the extra growth stays inside face | warped stage-1 face"


def test_canny_is_blank_on_the_face_and_the_paste_mask_fades_before_the_crop_edge(biden):
    _, template = biden
    edges = np.asarray(canny_outside(template.crop_image, template.face_mask))
    assert edges[template.face_mask].max() == 0 and edges.max() == 255
    alpha = paste_alpha(template.face_mask, 256)
    assert alpha[template.face_mask].min() == 1.0
    assert alpha[:10].max() == 0.0 and alpha[-10:].max() == 0.0


def test_pose_photo_is_padded_like_the_release(faces_dir):
    from facestudio.face.pose import pad_like_release

    tall = Image.open(faces_dir / "biden.jpg").convert("RGB")  # 970x2204
    padded, offset = pad_like_release(tall)
    assert padded.size == (2204, 2204) and offset == ((2204 - 970) // 2, 0)  # centred horizontally
    pixels = np.asarray(padded)
    assert pixels[:, : offset[0]].max() == 0 and pixels[:, offset[0] + 970 :].max() == 0
    wide = Image.new("RGB", (300, 100), (255, 255, 255))
    padded, offset = pad_like_release(wide)
    assert padded.size == (300, 300) and offset == (0, 200)  # padded at the top only
    assert np.asarray(padded)[:200].max() == 0 and np.asarray(padded)[200:].min() == 255
    same, offset = pad_like_release(Image.new("RGB", (64, 64)))
    assert same.size == (64, 64) and offset == (0, 0)


def test_padded_pose_keeps_the_body_proportions(faces_dir):
    from facestudio.face.pose import (
        OPENPOSE_COLORS,
        POSE_KEYPOINT_NAMES,
        PoseEstimator,
        pad_like_release,
        pose_condition,
    )

    photo = Image.open(faces_dir / "biden.jpg").convert("RGB")
    with PoseEstimator() as estimator:
        condition = pose_condition(photo, 512, 512, estimator=estimator, pad=True)
        padded, _ = pad_like_release(photo)
        pose = estimator.estimate(padded).scaled(512, 512)
    shoulder = POSE_KEYPOINT_NAMES.index("r_shoulder")
    x, y = np.round(pose.keypoints[shoulder]).astype(int)
    assert tuple(np.asarray(condition)[y, x]) == OPENPOSE_COLORS[shoulder]
    assert 128 <= x < 384, "a centred tall photo keeps the body in the middle third"


def test_release_references_are_shrunk_like_the_release_and_single_keeps_them(analyzer, faces_dir, tmp_path):
    """Step 0 of the release: the longer side at most 1000 px (text-to-image) / 2000 px (inpainting); `single`
    analyses the photo as it is, so its pixels do not change."""
    from facestudio.engine.hashing import HashCache
    from facestudio.engine.references import prepare_references, shrunk
    from facestudio.engine.requests import GenerateRequest, InpaintRequest, reference_max_side

    assert reference_max_side(GenerateRequest(faces=("a",), prompt="", recipe="release")) == 1000
    assert reference_max_side(InpaintRequest(faces=("a",), image="t", recipe="release")) == 2000
    assert reference_max_side(GenerateRequest(faces=("a",), prompt="")) is None
    photo = Image.open(faces_dir / "biden.jpg")  # 970x2204
    assert shrunk(photo, 1000).size == (440, 1000) and shrunk(photo, 2000).size == (880, 2000)
    assert shrunk(photo, None) is photo and shrunk(photo, 4000) is photo
    hashes = HashCache(tmp_path / "hashes.json")
    as_is = prepare_references(analyzer, [faces_dir / "biden.jpg"], hashes)
    small = prepare_references(analyzer, [faces_dir / "biden.jpg"], hashes, max_side=1000)
    assert as_is.crops.shape == small.crops.shape and not np.array_equal(as_is.crops, small.crops)
    assert as_is.sha256 == small.sha256  # the record still names the photo the user gave
