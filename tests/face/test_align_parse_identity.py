"""Alignment onto the ArcFace template, parsing masks, FACT reference crops and identity similarity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from facestudio.errors import FaceNotFoundError
from facestudio.face import ARCFACE_TEMPLATE, align_face, load_image, similarity_matrix, to_unit_range
from facestudio.face.identity import compare
from tests.face.images import noise

SAME = ["obama.jpg", "obama2.jpg", "obama2_rgba.png"]
OTHERS = ["biden.jpg", "astronaut.png"]


@pytest.fixture(scope="module")
def photos(faces_dir, analyzer):
    result = {}
    for name in SAME + OTHERS:
        image = load_image(faces_dir / name)
        face = analyzer.analyze(image).faces[0]
        result[name] = (image, face)
    return result


def test_similarity_transform_matches_skimage_least_squares():
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(1)
    kps = ARCFACE_TEMPLATE * 3.1 + rng.normal(0, 2.0, (5, 2)) + 200
    matrix = similarity_matrix(kps)
    reference = SimilarityTransform.from_estimate(kps, ARCFACE_TEMPLATE).params[:2]
    assert np.allclose(matrix, reference, atol=1e-9)
    assert np.allclose(similarity_matrix(ARCFACE_TEMPLATE), [[1, 0, 0], [0, 1, 0]], atol=1e-9)


def test_aligned_face_puts_landmarks_on_the_template(photos):
    image, face = photos["obama.jpg"]
    matrix = similarity_matrix(face.kps)
    mapped = np.c_[face.kps, np.ones(5)] @ matrix.T
    # A similarity cannot fit five points exactly (Obama smiles: wider mouth), but it lands every point near its slot.
    assert np.abs(mapped - ARCFACE_TEMPLATE).max() < 7.0
    assert np.linalg.norm(mapped - ARCFACE_TEMPLATE, axis=1).mean() < 5.0
    crop = align_face(np.asarray(image), face.kps)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    tensor = to_unit_range(crop)
    assert tensor.shape == (3, 112, 112) and tensor.min() >= -1.0 and tensor.max() <= 1.0


def test_alignment_border_is_black():
    pixels = np.full((100, 100, 3), 200, np.uint8)
    kps = ARCFACE_TEMPLATE * 0.3 + 85  # a tiny face in the bottom-right corner: the crop reaches past the photo
    crop = align_face(pixels, kps)
    assert crop[-1, -1].tolist() == [0, 0, 0] and crop[0, 0].tolist() == [200, 200, 200]


@pytest.mark.parametrize("name", SAME[:2] + OTHERS)
def test_parsing_masks_cover_the_face_and_not_the_background(analyzer, photos, name):
    image, face = photos[name]
    parsing = analyzer.parse(image, face)
    face_mask, head = parsing.face_mask, parsing.head_mask()
    for x, y in face.kps.round().astype(int):
        assert face_mask[y, x]
    assert parsing.mask("eyes")[tuple(face.kps[0].round().astype(int)[::-1])]
    assert parsing.mask("lips", "mouth").sum() > 0 and parsing.mask("brows").sum() > 0
    assert (head | ~face_mask).all()  # the head contains the face
    face_px, head_px = face_mask.sum(), head.sum()
    assert face_px > 0.5 * face.area  # the face mask fills most of the tight face box
    assert head_px > 1.15 * face_px  # and the head adds hair around it
    height = image.height
    assert not head[: max(1, int(face.bbox[1] - 0.8 * face.height))].any()  # nothing far above the head
    assert not head[min(height - 1, int(face.bbox[3] + 0.6 * face.height)):].any()  # nor below the chin
    assert parsing.mask("background")[0, 0] or parsing.mask("background")[0, -1]


def test_inpaint_mask_is_dilated_and_feathered(analyzer, photos):
    image, face = photos["obama.jpg"]
    parsing = analyzer.parse(image, face)
    soft = parsing.inpaint_mask("face", dilate_px=10, feather_px=12)
    assert soft.dtype == np.float32 and soft.min() == 0.0 and soft.max() == 1.0
    assert (soft[parsing.face_mask] == 1.0).all()
    assert ((soft > 0) & (soft < 1)).sum() > 100  # a soft edge exists
    assert soft.sum() > parsing.face_mask.sum()  # and it grew
    hard = parsing.inpaint_mask("head", dilate_px=0, feather_px=0)
    assert set(np.unique(hard)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="region"):
        parsing.inpaint_mask("ears")


def test_reference_crop_is_fact_input(analyzer, photos):
    image, face = photos["obama.jpg"]
    crop = analyzer.reference_crop(image, face)
    assert crop.shape == (112, 112, 3)
    assert (crop[:4].reshape(-1, 3).sum(axis=1) < 30).mean() > 0.3 or crop[:, :4].max() < 30  # masked to black
    centre = crop[40:90, 35:80]
    assert centre.mean() > 60  # the face itself is kept


def test_same_person_ranks_closer_than_any_cross_person_pair(analyzer, photos):
    embedding = {name: analyzer.embed(image, face) for name, (image, face) in photos.items()}
    same_pairs = list(itertools.combinations(SAME, 2))
    cross_pairs = [(a, b) for a in SAME + OTHERS for b in OTHERS if a != b and (b, a)]
    same = [compare(analyzer.embedder, embedding[a], embedding[b]) for a, b in same_pairs]
    cross = [compare(analyzer.embedder, embedding[a], embedding[b]) for a, b in cross_pairs]
    assert min(s.similarity for s in same) > max(c.similarity for c in cross)
    assert all(s.same_person for s in same)
    assert not any(c.same_person for c in cross)
    assert all(-1.0 <= s.similarity <= 1.0 for s in same + cross)


def test_similarity_needs_a_face(analyzer, photos):
    image, _ = photos["obama.jpg"]
    with pytest.raises(FaceNotFoundError, match=r"No face found in noise\.png"):
        analyzer.similarity(image, noise(), name_b="noise.png")
    with pytest.raises(FaceNotFoundError, match="face index 3 does not exist"):
        analyzer.similarity(image, image, index_b=3)
