"""Reference photos as the Identity tab checks them, and named identities kept on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from facestudio.engine.identities import IdentityStore, identity_slug, inspect_photos, parse_face_indexes
from facestudio.errors import FaceNotFoundError, InvalidRequestError


@pytest.fixture(scope="module")
def pair(faces_dir, analyzer, tmp_path_factory):
    """obama and biden side by side in one photo, each face 150 px wide (biden a little smaller: face 1)."""
    folder = tmp_path_factory.mktemp("pair")
    images = []
    for name, width in (("obama.jpg", 150), ("biden.jpg", 140)):
        image = Image.open(faces_dir / name).convert("RGB")
        scale = width / analyzer.analyze(image).faces[0].width
        images.append(image.resize((round(image.width * scale), round(image.height * scale))))
    left, right = images
    height = max(left.height, right.height)
    canvas = Image.new("RGB", (left.width + right.width, height))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    canvas.save(folder / "pair.png")
    return folder / "pair.png"


def test_usable_photos_have_crops_masks_and_no_warnings(analyzer, faces_dir):
    check = inspect_photos(analyzer, [faces_dir / "obama.jpg", faces_dir / "obama2.jpg"])
    assert [p.face_index for p in check.photos] == [0, 0] and check.all_warnings == []
    first = check.photos[0]
    assert first.crop.shape == (112, 112, 3) and first.head_mask.shape == (first.height, first.width)
    assert first.overlay.size == (first.width, first.height) and first.sharpness > 50


def test_each_problem_is_named(analyzer, faces_dir, tmp_path):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (300, 300), (120, 130, 140)).save(blank)
    blurry = tmp_path / "blurry.png"
    Image.open(faces_dir / "obama.jpg").filter(ImageFilter.GaussianBlur(8)).save(blurry)
    check = inspect_photos(analyzer, [faces_dir / "obama.jpg", faces_dir / "biden.jpg", faces_dir / "astronaut.png",
                                      blank, blurry])
    text = "\n".join(check.all_warnings)
    assert "wall.png: no face found" in text and check.photos[3].face_index is None
    assert "astronaut.png: the face is small" in text
    assert "blurry.png: the face is blurry" in text
    assert "biden.jpg looks like a different person than obama.jpg" in text
    assert len(check.usable) == 4


def test_several_faces_are_reported_and_the_chosen_one_is_kept(analyzer, pair, faces_dir, tmp_path):
    check = inspect_photos(analyzer, [pair], [1])
    assert "2 faces of similar size; face 1 is used" in check.all_warnings[0]
    with pytest.raises(FaceNotFoundError, match="face 5 does not exist"):
        inspect_photos(analyzer, [pair], [5])

    store = IdentityStore(tmp_path)
    saved = store.save("Pair, right", check)
    photo = Image.open(saved.photos[0])
    assert photo.size[0] < Image.open(pair).size[0]  # cropped around the chosen face
    chosen = analyzer.analyze(photo.convert("RGB")).faces[0]
    biden = Image.open(faces_dir / "biden.jpg").convert("RGB")
    obama = Image.open(faces_dir / "obama.jpg").convert("RGB")
    embed = analyzer.embed(photo.convert("RGB"), chosen)
    from facestudio.face.identity import cosine_similarity

    to_biden = cosine_similarity(embed, analyzer.embed(biden, analyzer.analyze(biden).faces[0]))
    to_obama = cosine_similarity(embed, analyzer.embed(obama, analyzer.analyze(obama).faces[0]))
    assert to_biden > to_obama


def test_store_saves_lists_replaces_and_deletes(analyzer, faces_dir, tmp_path):
    store = IdentityStore(tmp_path)
    check = inspect_photos(analyzer, [faces_dir / "obama.jpg", faces_dir / "obama2.jpg"])
    saved = store.save("  Barack  ", check)
    assert saved.name == "Barack" and saved.slug == "barack" and len(saved.photos) == 2
    record = json.loads((saved.folder / "identity.json").read_text())
    assert [entry["source"] for entry in record["photos"]] == ["obama.jpg", "obama2.jpg"]
    assert all(Image.open(p).format == "PNG" for p in saved.photos)  # re-encoded, metadata dropped
    assert [i.name for i in store.list()] == ["Barack"] and store.get("barack").photos == saved.photos

    with pytest.raises(InvalidRequestError, match="exists"):
        store.save("barack", check)
    one = inspect_photos(analyzer, [faces_dir / "obama.jpg"])
    assert len(store.save("Barack", one, overwrite=True).photos) == 1
    assert not [p for p in (tmp_path / "identities").iterdir() if p.name.startswith(".")]  # no leftovers

    (tmp_path / "identities" / "broken").mkdir()
    (tmp_path / "identities" / "broken" / "identity.json").write_text("{not json")
    assert [i.name for i in store.list()] == ["Barack"]  # a damaged folder is skipped, not fatal
    store.delete("Barack")
    assert store.list() == []
    with pytest.raises(InvalidRequestError, match="no saved identity"):
        store.get("Barack")


@pytest.mark.parametrize(("name", "slug"), [("Alex", "alex"), ("../../etc/passwd", "etc-passwd"),
                                            ("Zoë Smith", "zo-smith"), ("a/b\\c", "a-b-c")])
def test_names_map_to_folders_inside_the_store(name, slug):
    assert identity_slug(name) == slug


@pytest.mark.parametrize("name", ["", "   ", "../..", "x" * 65])
def test_unusable_names_are_refused(name):
    with pytest.raises(InvalidRequestError):
        identity_slug(name)


def test_face_numbers_parse_per_photo():
    assert parse_face_indexes("0, 2", 3) == [0, 2, None]
    assert parse_face_indexes("", 2) == [None, None]
    with pytest.raises(InvalidRequestError, match="whole numbers"):
        parse_face_indexes("one", 1)
    with pytest.raises(InvalidRequestError, match="at most one face number per photo"):
        parse_face_indexes("0,0,0", 2)


def test_empty_and_too_many_photos_are_refused(analyzer, faces_dir):
    with pytest.raises(InvalidRequestError, match="at least one photo"):
        inspect_photos(analyzer, [])
    with pytest.raises(InvalidRequestError, match="at most 8"):
        inspect_photos(analyzer, [faces_dir / "obama.jpg"] * 9)


def test_a_photo_without_a_face_cannot_be_saved_alone(analyzer, tmp_path):
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    with pytest.raises(InvalidRequestError, match="nothing to save"):
        IdentityStore(tmp_path).save("x", inspect_photos(analyzer, [blank]))


def test_subject_words_are_saved_edited_and_put_first_in_the_prompt(tmp_path):
    import json

    from facestudio.engine.identities import IdentityStore, with_subject

    assert with_subject("a portrait", " a woman,  25-year-old, ") == "a woman, 25-year-old, a portrait"
    assert with_subject("a portrait", "") == "a portrait"
    folder = tmp_path / "identities" / "alex"
    folder.mkdir(parents=True)
    (folder / "photo-01.png").write_bytes(b"")
    old = {"format": "facestudio-identity", "version": 1, "name": "Alex", "photos": [{"file": "photo-01.png"}]}
    store = IdentityStore(tmp_path)
    from facestudio.engine.identities import IDENTITY_FORMAT

    old["format"] = IDENTITY_FORMAT
    (folder / "identity.json").write_text(json.dumps(old))
    assert store.get("Alex").subject == ""  # identities saved before subjects existed
    assert store.set_subject("Alex", "a man,\n 60-year-old").subject == "a man, 60-year-old"
    assert store.get("Alex").to_dict()["subject"] == "a man, 60-year-old"


def test_subject_words_come_from_the_gender_age_model_when_there_is_one(analyzer, faces_dir, tmp_path, monkeypatch):
    """With an estimator (insightface's genderage when its pack is on disk) the check suggests the release's words
    and a save without words keeps them; words the user typed win; without one nothing is guessed."""
    from facestudio.face.attributes import Attributes, subject_words

    assert subject_words([Attributes(True, 24), Attributes(True, 27), Attributes(False, 30)]) == \
        "a beautiful woman, 27-year-old"
    assert subject_words([Attributes(False, 41)]) == "a handsome man, 41-year-old" and subject_words([]) == ""
    seen = []

    class Stub:
        def estimate(self, pixels, face):
            seen.append((pixels.shape, face.width))
            return Attributes(woman=False, age=60)

    photos = [faces_dir / "obama.jpg", faces_dir / "obama2.jpg"]
    monkeypatch.setattr(analyzer, "_attributes_probed", True)
    monkeypatch.setattr(analyzer, "_attributes", None)
    assert inspect_photos(analyzer, photos[:1]).suggested_subject == ""
    monkeypatch.setattr(analyzer, "_attributes", Stub())
    check = inspect_photos(analyzer, photos)
    assert check.suggested_subject == "a handsome man, 60-year-old" and len(seen) == 2
    assert seen[0][0] == (1137, 910, 3)  # the whole photo with its face, as the model expects
    store = IdentityStore(tmp_path)
    assert store.save("Barack", check).subject == "a handsome man, 60-year-old"
    assert store.save("Typed", check, subject="a man, 47-year-old").subject == "a man, 47-year-old"
