"""Offline detection on real photos: one face each, five landmarks in FACT's order and in the right places."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facestudio.face import load_image
from tests.face.images import noise, with_exif_orientation

PHOTOS = ["obama.jpg", "obama2.jpg", "obama2_rgba.png", "biden.jpg", "astronaut.png"]


@pytest.fixture(scope="module")
def analyses(analyzer, faces_dir):
    return {name: analyzer.analyze(load_image(faces_dir / name)) for name in PHOTOS}


@pytest.mark.parametrize("name", PHOTOS)
def test_one_face_with_landmarks_in_template_order(analyses, name):
    analysis = analyses[name]
    assert analysis.backend == "mediapipe"
    assert len(analysis.faces) == 1
    face = analysis.faces[0]
    assert face.score > 0.6
    assert face.landmarks_source == "mesh" and face.landmarks.shape == (478, 2)
    left_eye, right_eye, nose, mouth_left, mouth_right = face.kps
    x0, y0, x1, y1 = face.bbox
    assert np.all((face.kps[:, 0] > x0) & (face.kps[:, 0] < x1) & (face.kps[:, 1] > y0) & (face.kps[:, 1] < y1))
    assert left_eye[0] < nose[0] < right_eye[0]  # the eye on the image's left comes first
    assert mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])  # eyes, nose, mouth
    assert 0.3 < face.eye_distance / face.width < 0.6


def test_landmarks_where_a_person_would_put_them(analyses):
    # Hand-checked on the overlay: Obama's official portrait, iris centres and mouth corners (±6 px).
    kps = analyses["obama.jpg"].faces[0].kps
    expected = np.array([[443, 214], [550, 212], [495, 283], [433, 323], [555, 317]])
    assert np.abs(kps - expected).max() < 6


def test_alpha_png_matches_its_jpeg(analyses):
    a, b = analyses["obama2.jpg"].faces[0], analyses["obama2_rgba.png"].faces[0]
    assert np.abs(a.kps - b.kps).max() < 3


def test_no_face_is_an_empty_list_not_an_error(analyzer):
    analysis = analyzer.analyze(noise((640, 480)))
    assert analysis.faces == []
    assert (analysis.width, analysis.height) == (640, 480)


def test_exif_rotated_photo_reports_upright_coordinates(analyzer, faces_dir, tmp_path, analyses):
    upright = load_image(faces_dir / "obama.jpg")
    path = tmp_path / "sideways.jpg"
    path.write_bytes(with_exif_orientation(upright))
    analysis = analyzer.analyze(load_image(path))
    assert (analysis.width, analysis.height) == upright.size
    assert np.abs(analysis.faces[0].kps - analyses["obama.jpg"].faces[0].kps).max() < 4


def test_large_photo_is_analysed_downscaled_with_coordinates_mapped_back(faces_dir, analyses):
    from facestudio.face import FaceAnalyzer

    small_view = FaceAnalyzer(backend="mediapipe", analysis_max_side=700)
    image = load_image(faces_dir / "obama.jpg")
    face = small_view.analyze(image).faces[0]
    assert np.abs(face.kps - analyses["obama.jpg"].faces[0].kps).max() < 6
    small_view.close()


def test_group_photo_finds_every_face_including_small_and_border_cut(analyzer, faces_dir, analyses):
    """A synthetic group photo: four people at 200, 80, 30 px face width, and one face cut by the right border."""
    canvas = Image.new("RGB", (1600, 1000), (90, 110, 130))
    placements = []  # (name, face width in px, top-left of the pasted head crop)
    for name, width, position in [("obama.jpg", 200, (60, 80)), ("biden.jpg", 80, (700, 120)),
                                  ("astronaut.png", 30, (1000, 600)), ("obama2.jpg", 30, (420, 700))]:
        source = load_image(faces_dir / name)
        face = analyses[name].faces[0]
        scale = width / face.width
        margin = 1.0 * face.width
        crop = source.crop((int(face.bbox[0] - margin), int(face.bbox[1] - margin),
                            int(face.bbox[2] + margin), int(face.bbox[3] + margin)))
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.LANCZOS)
        canvas.paste(crop, position)
        placements.append((name, width, position))
    # A face cut by the border: only its left ~65% is inside the photo.
    source = load_image(faces_dir / "biden.jpg")
    face = analyses["biden.jpg"].faces[0]
    scale = 160 / face.width
    crop = source.crop((int(face.bbox[0] - 60), int(face.bbox[1] - 60), int(face.bbox[2] + 60), int(face.bbox[3] + 60)))
    crop = crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.LANCZOS)
    canvas.paste(crop, (1600 - round(crop.width * 0.6), 300))

    faces = analyzer.analyze(canvas).faces
    assert len(faces) == 5, [f.bbox.round() for f in faces]
    widths = sorted(f.width for f in faces)
    assert widths[0] < 45 and widths[1] < 45  # both 30-px faces are found
    cut = [f for f in faces if f.bbox[2] > 1560]
    assert len(cut) == 1  # and the face leaving the photo on the right
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)  # largest first
