"""Identity where other tools lose it: best of N, the face fix, several people in one template.

Tiny random models make no faces of their own, so the face fix after text-to-image is tested on a text-to-image
result replaced by a real group photo (the pipeline call is wrapped); every inpainting call is the engine's own.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from facestudio.engine import GenerationRecord
from facestudio.engine.generation import Engine, GeneratedImage, faces_to_fix, rank_candidates
from facestudio.engine.requests import FaceAssignment, GenerateRequest, InpaintRequest
from facestudio.errors import InvalidRequestError
from tests.engine.conftest import pixels


def group_photo(faces_dir, size: tuple[int, int], names=("obama.jpg", "biden.jpg", "astronaut.png")) -> Image.Image:
    """People side by side on a grey wall, feet at the bottom (mediapipe finds every face at these sizes)."""
    canvas = Image.new("RGB", size, (120, 130, 140))
    left = 10
    for name in names:
        photo = Image.open(faces_dir / name).convert("RGB")
        if name == "biden.jpg":  # the full-body portrait: keep the upper body
            photo = photo.crop((0, 0, photo.width, int(photo.width * 1.2)))
        photo.thumbnail((size[0] // len(names) - 20, size[1] - 20))
        canvas.paste(photo, (left, size[1] - photo.height))
        left += photo.width + 20
    return canvas


@pytest.fixture(scope="module")
def refs(engine, faces_dir):  # in the engine's home: the PNGs name them relative to it, regenerate finds them
    return small_references(engine.manager.settings.home / "refs", faces_dir)


def small_references(folder, faces_dir):
    """Small copies of the reference photos (analysing the full-size ones would dominate these tests' time)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        photo = Image.open(faces_dir / name).convert("RGB")
        if name == "biden.jpg":
            photo = photo.crop((0, 0, photo.width, photo.width))
        photo.thumbnail((400, 400))
        photo.save(folder / name, quality=95)
    return folder


@pytest.fixture(scope="module")
def group(engine, faces_dir) -> str:
    path = engine.manager.settings.home / "group" / "group.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    group_photo(faces_dir, (900, 500)).save(path)
    return str(path)


def masks_union(engine, image: Image.Image, indexes) -> np.ndarray:
    """Where the engine may repaint faces `indexes` of `image`: the union of their blend masks."""
    faces = engine.manager.analyzer().analyze(image).faces
    union = np.zeros((image.height, image.width), bool)
    for index in indexes:
        face = faces[index]
        union |= engine._face_alpha(image, face, "face", None, None, [f for f in faces if f is not face]) > 0
    return union


def changed(a: Image.Image, b: Image.Image) -> np.ndarray:
    return np.any(pixels(a) != pixels(b), axis=-1)


# -- best of N -------------------------------------------------------------------------------------------------------


def test_ranking_puts_unscored_candidates_last_and_keeps_seed_order_on_ties():
    images = [GeneratedImage(Image.new("RGB", (8, 8)), seed, None, None) for seed in range(5)]  # type: ignore[arg-type]
    scores = {0: 0.2, 1: None, 2: 0.9, 3: 0.2, 4: None}
    ranked = rank_candidates(images, lambda image: scores[image.seed])
    assert [image.seed for image, _ in ranked] == [2, 0, 3, 1, 4]


def test_best_of_keeps_the_k_best_by_the_scorer_and_records_every_candidate(engine, tiny_request, refs, tmp_path):
    def brightness(image: GeneratedImage) -> float:  # a stub scorer: tiny models draw no face to score
        return float(pixels(image.image).mean())

    request = tiny_request(faces=[str(refs / "obama.jpg")], seed=40, best_of=3, keep=2, face_fix="off", steps=2)
    result = engine.generate(request, out_dir=tmp_path, scorer=brightness)
    assert len(result.images) == 2
    record = GenerationRecord.from_png(result.images[0].path)
    assert [c["seed"] for c in record.candidates] == [40, 41, 42]
    scores = sorted((c["score"] for c in record.candidates), reverse=True)
    assert len(set(scores)) == 3, "the seeds must give different images"
    assert [c["score"] for c in sorted(record.candidates, key=lambda c: c["rank"])] == scores
    assert [c["seed"] for c in record.candidates if c["kept"]] == sorted(image.seed for image in result.images)
    for rank, image in enumerate(result.images, start=1):  # best first, each scored as recorded
        entry = next(c for c in record.candidates if c["seed"] == image.seed)
        assert entry["rank"] == rank and entry["score"] == pytest.approx(brightness(image), abs=1e-3)
    assert record.request.best_of == 1 and record.request.seed == result.images[0].seed
    again = engine.regenerate(result.images[1].path, models=request.models).images[0]
    assert np.array_equal(pixels(again.image), pixels(result.images[1].image))


@pytest.mark.parametrize(("overrides", "field"), [
    ({"best_of": 0}, "best_of"), ({"best_of": 17}, "best_of"), ({"best_of": 2, "keep": 3}, "keep"),
    ({"best_of": 3, "num_images": 2}, "best_of"), ({"face_fix": "maybe"}, "face_fix"),
    ({"face_fix_denoise": 0.0}, "face_fix_denoise"), ({"face_fix_denoise": 1.5}, "face_fix_denoise"),
])
def test_new_options_out_of_range_are_refused_before_any_model_loads(tiny_request, overrides, field):
    with pytest.raises(InvalidRequestError) as caught:
        tiny_request(**overrides).checked()
    assert caught.value.field == field


def test_assignments_are_checked(tiny_request, faces_dir):
    base = dict(image="t.png", faces=(), recipe="single")
    obama = (str(faces_dir / "obama.jpg"),)
    with pytest.raises(InvalidRequestError, match="names face 1 twice"):
        InpaintRequest(**base, assignments=(FaceAssignment(1, obama), FaceAssignment(1, obama))).checked()
    with pytest.raises(InvalidRequestError, match="no reference photo"):
        InpaintRequest(**base, assignments=(FaceAssignment(0, ()),)).checked()
    with pytest.raises(InvalidRequestError, match="automatic `mask`"):
        InpaintRequest(**base, mask="m.png", assignments=(FaceAssignment(0, obama),)).checked()
    checked = InpaintRequest(**base, assignments=(FaceAssignment(0, obama, "Barack"),)).checked()
    assert checked.faces == () and checked.assignments[0].identity == "Barack"
    assert InpaintRequest.from_dict(checked.to_dict()) == checked


# -- face fix --------------------------------------------------------------------------------------------------------


def test_which_faces_the_face_fix_repaints(faces_dir, analyzer):
    image = group_photo(faces_dir, (900, 500))
    faces = analyzer.analyze(image).faces
    assert len(faces) == 3 and all(max(f.width, f.height) < 0.4 * 500 for f in faces)
    assert faces_to_fix(faces, image.size, "auto") == faces
    assert faces_to_fix(faces, (120, 120), "auto") == []  # the same boxes are large in a 120px image
    assert faces_to_fix(faces, (120, 120), "on") == faces
    assert faces_to_fix(faces, image.size, "off") == []


@pytest.fixture
def text_to_image_makes(monkeypatch):
    """Make the text-to-image call return `photo` (tiny models draw no faces); inpainting calls run for real."""
    original = Engine._denoise

    def install(photo: Image.Image):
        def denoise(self, request, loaded, encoded, index, total, callbacks):
            if isinstance(request, InpaintRequest):
                return original(self, request, loaded, encoded, index, total, callbacks)
            return photo.copy(), False

        monkeypatch.setattr(Engine, "_denoise", denoise)

    return install


def test_face_fix_repaints_small_faces_after_text_to_image_and_regenerates(engine, tiny_request, faces_dir, refs,
                                                                           text_to_image_makes, tmp_path):
    photo = group_photo(faces_dir, (384, 384), names=("obama.jpg", "biden.jpg"))
    text_to_image_makes(photo)
    request = tiny_request(faces=[str(refs / "obama.jpg")], width=384, height=384, steps=2, face_strength=0.8, seed=3)
    made = engine.generate(request, out_dir=tmp_path).images[0]
    stages = made.record.stages
    assert [s["stage"] for s in stages] == ["text-to-image", "face-fix", "face-fix"]
    assert all(s["denoise"] == 0.4 and s["face_strength"] == 0.55 for s in stages[1:])
    assert all(isinstance(s["similarity_before"], float) for s in stages[1:])
    difference = changed(made.image, photo)
    allowed = masks_union(engine, photo, [0, 1])
    for stage in stages[1:]:  # each fixed face changed
        x0, y0, x1, y1 = (int(v) for v in stage["face_bbox"])
        assert difference[y0:y1, x0:x1].mean() > 0.3
    assert not (difference & ~allowed).any(), "pixels outside the faces' masks must be the text-to-image result's"
    record = GenerationRecord.from_png(made.path)
    assert record.stages == stages and record.request.face_fix == "auto"
    again = engine.regenerate(made.path, models=request.models).images[0]  # the test models live outside
    assert np.array_equal(pixels(again.image), pixels(made.image))


def test_fix_faces_on_a_group_photo_changes_the_chosen_faces_only(engine, tiny_request, group, refs):
    source = Image.open(group).convert("RGB")
    request = InpaintRequest(faces=(str(refs / "obama2.jpg"),), image=group, recipe="single", denoise=0.4,
                             face_strength=0.55, steps=3, width=256, height=256, seed=1,
                             models=tiny_request().models)
    one = engine.fix_faces(request, [2]).images[0]
    assert [s["face_index"] for s in one.record.stages] == [2]
    difference = changed(one.image, source)
    assert difference.any() and not (difference & ~masks_union(engine, source, [2])).any()
    every = engine.fix_faces(request).images[0]
    assert [s["face_index"] for s in every.record.stages] == [0, 1, 2]
    difference = changed(every.image, source)
    assert not (difference & ~masks_union(engine, source, [0, 1, 2])).any()
    for stage in every.record.stages:
        x0, y0, x1, y1 = (int(v) for v in stage["face_bbox"])
        assert difference[y0:y1, x0:x1].mean() > 0.3
        assert isinstance(stage["similarity_before"], float)


# -- several people --------------------------------------------------------------------------------------------------


def several(tiny_request, group, refs, first: str, second: str, **overrides) -> InpaintRequest:
    fields = dict(faces=(), image=group, recipe="single", steps=2, width=256, height=256, seed=9, face_strength=0.8,
                  denoise=0.75, models=tiny_request().models,
                  assignments=(FaceAssignment(0, (str(refs / first),), "first"),
                               FaceAssignment(1, (str(refs / second),)),))
    fields.update(overrides)
    return InpaintRequest(**fields)


def test_several_people_paint_their_faces_and_leave_the_others_bit_identical(engine, tiny_request, group, refs,
                                                                             tmp_path):
    source = Image.open(group).convert("RGB")
    made = engine.inpaint(several(tiny_request, group, refs, "obama2.jpg", "biden.jpg"), out_dir=tmp_path)
    image = made.images[0]
    assert image.image.size == source.size
    difference = changed(image.image, source)
    assert not (difference & ~masks_union(engine, source, [0, 1])).any(), "face 2 and the rest stay bit-identical"
    stages = image.record.stages
    assert [(s["face_index"], s["identity"]) for s in stages] == [(0, "first"), (1, "")]
    assert [s["references"][0]["name"] for s in stages] == ["obama2.jpg", "biden.jpg"]
    for stage in stages:
        x0, y0, x1, y1 = (int(v) for v in stage["face_bbox"])
        assert difference[y0:y1, x0:x1].mean() > 0.3
    swapped = engine.inpaint(several(tiny_request, group, refs, "biden.jpg", "obama2.jpg")).images[0]
    assert np.abs(pixels(swapped.image) - pixels(image.image)).mean() > 0.01
    record = GenerationRecord.from_png(image.path)
    assert record.request.assignments == image.record.request.assignments
    again = engine.regenerate(image.path, models=tiny_request().models).images[0]
    assert np.array_equal(pixels(again.image), pixels(image.image))


def test_regenerating_several_people_refuses_a_changed_photo(engine, tiny_request, group, refs, tmp_path):
    photo = tmp_path / "person.jpg"
    photo.write_bytes((refs / "obama2.jpg").read_bytes())
    request = several(tiny_request, group, refs, "obama2.jpg", "biden.jpg")
    request = dataclasses.replace(request, assignments=(FaceAssignment(0, (str(photo),)),))
    made = engine.inpaint(request, out_dir=tmp_path).images[0]
    photo.write_bytes((refs / "biden.jpg").read_bytes())
    with pytest.raises(InvalidRequestError, match=r"person\.jpg differs"):
        engine.regenerate(made.path)


def test_old_records_regenerate_without_a_face_fix():
    request = GenerateRequest(faces=("a.jpg",), prompt="x", seed=1)
    data = {"request": {k: v for k, v in request.to_dict().items() if k not in ("face_fix", "best_of", "keep")},
            "seed": 1, "width": 512, "height": 512, "models": {}}
    assert GenerationRecord.from_dict(data).request.face_fix == "off"


def test_several_people_with_the_release_recipe(engine, tiny_request, tiny_studio, group, refs):
    source = Image.open(group).convert("RGB")
    models = dataclasses.replace(tiny_request().models, canny_controlnet=str(tiny_studio.controlnet))
    request = several(tiny_request, group, refs, "obama2.jpg", "biden.jpg", recipe="release", denoise=0.6,
                      face_strength=0.55, models=models)
    image = engine.inpaint(request).images[0]
    difference = changed(image.image, source)
    faces = engine.manager.analyzer().analyze(source).faces
    x0, y0, x1, y1 = (int(v) for v in faces[2].bbox)
    assert not difference[y0:y1, x0:x1].any(), "the face not listed stays bit-identical"
    for stage in image.record.stages:
        assert stage["stages"] and stage["stages"][0]["stage"]
        x0, y0, x1, y1 = (int(v) for v in stage["face_bbox"])
        assert difference[y0:y1, x0:x1].mean() > 0.3
