"""`prepare`: photos → training dataset. Real photos, the offline analyzer, and the awkward cases a user's folder has."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from facestudio.errors import DatasetError
from facestudio.face.types import Face
from facestudio.training import (
    OUTPUT_FOLDERS,
    DatasetItem,
    PrepareSettings,
    extract_zip,
    is_dataset_folder,
    load_manifest,
    prepare_dataset,
)
from facestudio.training.dataset import check_output_folder, crop_around_face
from tests.conftest import REPO_ROOT
from tests.face.images import noise

OBAMA2_CAPTION = "a photo of barack obama speaking"

#: Every photo of the test folder and what must happen to it (None = kept).
EXPECTED = {
    "obama/obama.jpg": None,
    "obama/obama2.jpg": None,
    "obama/small.jpg": "too_small",     # obama downscaled: the face is ~40 px
    "obama/blurry.jpg": "blurry",       # obama2 with a strong Gaussian blur
    "obama/broken.jpg": "broken",       # text with a .jpg name
    "biden/biden.jpg": None,
    "biden/noise.png": "no_face",
    "biden/group.jpg": "several_faces",  # obama and obama2 side by side, faces of similar size
    "collins/astronaut.png": "too_small",  # a fine portrait, but the face is 92 px < the default 96
}


def build_photos(root: Path, faces_dir: Path) -> Path:
    for identity in ("obama", "biden", "collins"):
        (root / identity).mkdir(parents=True)
    shutil.copy(faces_dir / "obama.jpg", root / "obama")
    shutil.copy(faces_dir / "obama2.jpg", root / "obama")
    (root / "obama" / "obama2.TXT").write_text(f"\ufeff  {OBAMA2_CAPTION}\n", encoding="utf-8")
    (root / "obama" / "broken.jpg").write_text("this is not a photo")
    (root / "obama" / "notes.md").write_text("ignored: not a photo")
    obama, obama2 = Image.open(faces_dir / "obama.jpg").convert("RGB"), Image.open(faces_dir / "obama2.jpg").convert("RGB")
    obama.resize((obama.width * 40 // 238, obama.height * 40 // 238), Image.Resampling.LANCZOS).save(
        root / "obama" / "small.jpg", quality=95)
    obama2.filter(ImageFilter.GaussianBlur(8)).save(root / "obama" / "blurry.jpg", quality=95)
    shutil.copy(faces_dir / "biden.jpg", root / "biden")
    noise().save(root / "biden" / "noise.png")
    height = 800
    left = obama.resize((obama.width * height // obama.height, height))
    right = obama2.resize((obama2.width * height // obama2.height, height))
    group = Image.new("RGB", (left.width + right.width, height))
    group.paste(left, (0, 0))
    group.paste(right, (left.width, 0))
    group.save(root / "biden" / "group.jpg", quality=95)
    shutil.copy(faces_dir / "astronaut.png", root / "collins")
    return root


@pytest.fixture(scope="module")
def photos(faces_dir, tmp_path_factory) -> Path:
    return build_photos(tmp_path_factory.mktemp("photos") / "people", faces_dir)


@pytest.fixture(scope="module")
def prepared(photos, analyzer, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset") / "ds"
    seen = []
    report = prepare_dataset(photos, out, analyzer, PrepareSettings(), on_item=lambda item, done, total:
                             seen.append((item.source, done, total)))
    return report, out, seen


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_each_photo_is_kept_or_rejected_with_its_reason(prepared):
    report, _, seen = prepared
    assert {item.source: item.reason for item in report.items} == EXPECTED
    assert [done for _, done, _ in seen] == list(range(1, len(EXPECTED) + 1))
    assert {total for _, _, total in seen} == {len(EXPECTED)}
    by_source = {item.source: item for item in report.items}
    assert "broken.jpg" in by_source["obama/broken.jpg"].detail and "not an image" in by_source["obama/broken.jpg"].detail
    assert 30 <= by_source["obama/small.jpg"].face_px < 60
    assert by_source["obama/blurry.jpg"].sharpness < PrepareSettings().min_sharpness
    assert all(item.sharpness > 300 for item in report.kept)
    assert report.written and report.backend == "mediapipe"


def test_report_json_and_identity_warnings(prepared):
    report, out, _ = prepared
    saved = read_json(out / "report.json")
    assert saved == json.loads(json.dumps(report.to_dict()))
    assert (saved["photos"], saved["kept"], saved["rejected"]) == (9, 3, 6)
    assert {entry["source"]: entry["status"] for entry in saved["items"]} == {
        source: "kept" if reason is None else "rejected" for source, reason in EXPECTED.items()}
    assert all(entry["detail"] for entry in saved["items"] if entry["status"] == "rejected")
    # biden has one kept photo, collins none: training's shuffle needs two of the same person.
    assert len(report.warnings) == 2
    assert "'biden' has 1" in report.warnings[0] and "'collins' has 0" in report.warnings[1]


def test_files_have_the_right_sizes_and_masks_are_consistent(prepared):
    _, out, _ = prepared
    manifest = read_json(out / "manifest.json")
    assert len(manifest["items"]) == 3
    for entry in manifest["items"]:
        image = Image.open(out / entry["image"])
        assert (image.size, image.mode) == ((512, 512), "RGB")
        reference = Image.open(out / entry["reference"])
        assert (reference.size, reference.mode) == ((112, 112), "RGB")
        assert np.asarray(reference)[40:80, 40:80].mean() > 40  # the face, not the black outside the head
        face = np.asarray(Image.open(out / entry["face_mask"]))
        head = np.asarray(Image.open(out / entry["head_mask"]))
        assert face.shape == head.shape == (512, 512)
        assert set(np.unique(face)) == set(np.unique(head)) == {0, 255}
        face, head = face > 0, head > 0
        assert not (face & ~head).any(), "the face mask must lie inside the head mask"
        assert head.sum() > 1.2 * face.sum() > 0.05 * 512 * 512
        x0, y0, x1, y1 = entry["bbox"]
        inside = face[int(y0):int(y1), int(x0):int(x1)].sum()
        assert inside > 0.8 * face.sum(), "the face mask lies in the face box"
        assert entry["image"].startswith("images/") and entry["image"].endswith(".png")
    assert [entry["image"] for entry in manifest["items"]] == [
        "images/biden/000_biden.png", "images/obama/002_obama.png", "images/obama/003_obama2.png"]


def test_face_is_centred_in_the_crop_at_the_chosen_fraction(prepared, analyzer):
    _, out, _ = prepared
    for entry in read_json(out / "manifest.json")["items"]:
        x0, y0, x1, y1 = entry["bbox"]
        assert (x1 - x0) == pytest.approx(0.4 * 512, abs=0.5)
        assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((256, 256), abs=0.5)
        # The face detected again in the written image agrees: the crop and its coordinates match.
        found = analyzer.analyze(Image.open(out / entry["image"]).convert("RGB")).faces[0]
        assert np.abs(found.center - 256).max() < 12
        assert np.abs(found.kps - np.array(entry["kps"])).max() < 8
        assert found.width == pytest.approx(0.4 * 512, rel=0.1)


def test_txt_beside_a_photo_overrides_the_caption(prepared):
    report, _, _ = prepared
    captions = {item.source: item.entry.caption for item in report.kept}
    assert captions == {"obama/obama2.jpg": OBAMA2_CAPTION, "obama/obama.jpg": "a photo of a person",
                        "biden/biden.jpg": "a photo of a person"}


def test_manifest_round_trips_through_load_manifest(prepared, photos):
    report, out, _ = prepared
    manifest = load_manifest(out)
    assert manifest == load_manifest(out / "manifest.json")
    assert manifest.items == tuple(item.entry for item in report.kept)
    assert manifest.identities == ("biden", "obama") and manifest.format_version == 1
    assert len(manifest.items_of("obama")) == 2
    assert manifest.settings["min_face_px"] == 96 and "overwrite" not in manifest.settings
    for item in manifest.items:
        assert DatasetItem.from_dict(item.to_dict(), "test") == item
        assert all(manifest.path(relative).is_file() for relative in item.files())
        assert len(item.kps) == 5 and len(item.sha256) == 64
    saved = read_json(out / "manifest.json")
    assert saved["source"] == str(photos) and saved["identities"] == [{"name": "biden", "photos": 1},
                                                                      {"name": "obama", "photos": 2}]


def test_load_manifest_refuses_broken_datasets(prepared, tmp_path):
    _, out, _ = prepared
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "references" / "biden" / "000_biden.png").unlink()
    with pytest.raises(DatasetError, match="missing"):
        load_manifest(copy)
    assert len(load_manifest(copy, check_files=False).items) == 3
    data = read_json(copy / "manifest.json")
    data["items"][0]["image"] = "../../etc/passwd"
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="leaves the dataset folder"):
        load_manifest(copy, check_files=False)
    (copy / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DatasetError, match="not a FaceStudio dataset manifest"):
        load_manifest(copy)
    with pytest.raises(DatasetError, match="does not exist"):
        load_manifest(tmp_path / "nowhere")


def test_the_same_photos_as_a_zip_give_the_same_items(prepared, photos, analyzer, tmp_path):
    report, _, _ = prepared
    archive = tmp_path / "people.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(photos.rglob("*")):
            if path.is_file():  # stored under one top folder, as zipping a folder does
                bundle.write(path, f"people/{path.relative_to(photos).as_posix()}")
        bundle.writestr("__MACOSX/people/._obama.jpg", b"resource fork junk")
    zipped = prepare_dataset(archive, tmp_path / "ds", analyzer, PrepareSettings())
    assert [(i.source, i.identity, i.reason) for i in zipped.items] == [
        (i.source, i.identity, i.reason) for i in report.items]
    broken = next(item for item in zipped.items if item.reason == "broken")
    assert f"{archive}:people/obama/broken.jpg" in broken.detail  # messages name the archive, not a temporary folder
    assert load_manifest(tmp_path / "ds").items == tuple(item.entry for item in report.kept)


def test_the_zip_and_pixel_limits_given_to_prepare_are_the_ones_applied(tmp_path, analyzer):
    """The fronts pass `StudioSettings.max_zip_bytes`/`max_pixels`; the library reads no variable of its own."""
    archive = tmp_path / "one.zip"
    encoded = tmp_path / "photo.png"
    noise((40, 30)).save(encoded)
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(encoded, "people/photo.png")
    with pytest.raises(DatasetError, match="over the limit of"):
        prepare_dataset(archive, tmp_path / "ds", analyzer, PrepareSettings(), max_zip_bytes=100)
    report = prepare_dataset(archive, tmp_path / "ds", analyzer, PrepareSettings(), max_pixels=40 * 30 - 1)
    assert [(item.reason, "over the limit" in item.detail) for item in report.items] == [("broken", True)]
    assert not report.written and not (tmp_path / "ds").exists()


def test_zip_slip_and_absolute_members_are_refused(tmp_path, analyzer):
    for name in ("../evil.jpg", "people/../../evil.jpg", "/tmp/evil.jpg", "C:/evil.jpg"):
        archive = tmp_path / "slip.zip"
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("people/fine.jpg", b"x")
            bundle.writestr(zipfile.ZipInfo(name), b"payload")
        with pytest.raises(DatasetError, match="unsafe member"):
            prepare_dataset(archive, tmp_path / "ds", analyzer, PrepareSettings())
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path.parent / "evil.jpg").exists()
    assert not (tmp_path / "ds").exists()


def test_zip_links_caps_and_corruption(tmp_path):
    archive = tmp_path / "links.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        link = zipfile.ZipInfo("a/link.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        bundle.writestr(link, "/etc/passwd")
        bundle.writestr("a/photo.jpg", b"\xff" * 1000)
        bundle.writestr("a/photo.txt", "a caption")
        bundle.writestr("a/readme.md", "not extracted")
    dest = tmp_path / "x"
    dest.mkdir()
    assert extract_zip(archive, dest) == 2
    assert sorted(p.name for p in (dest / "a").iterdir()) == ["photo.jpg", "photo.txt"]
    with pytest.raises(DatasetError, match="over the limit of"):
        extract_zip(archive, tmp_path / "y", max_bytes=500)
    with pytest.raises(DatasetError, match="raise FACESTUDIO_MAX_ZIP_BYTES"):
        extract_zip(archive, tmp_path / "z", max_bytes=100)
    with pytest.raises(DatasetError, match="members, over the limit"):
        extract_zip(archive, tmp_path / "w", max_members=3)
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DatasetError, match=r"corrupt\.zip is not a readable zip archive"):
        extract_zip(corrupt, tmp_path / "v")


def test_non_dataset_folder_needs_overwrite_and_a_rerun_replaces_the_dataset(faces_dir, analyzer, tmp_path):
    photos = tmp_path / "me"
    photos.mkdir()
    shutil.copy(faces_dir / "obama.jpg", photos)
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("someone's file")
    with pytest.raises(DatasetError, match="not empty and is not a FaceStudio dataset"):
        prepare_dataset(photos, out, analyzer, PrepareSettings())
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    first = prepare_dataset(photos, out, analyzer, PrepareSettings(overwrite=True))
    assert first.written and (out / "notes.txt").read_text() == "someone's file"
    assert (out / "images" / "me" / "000_obama.png").is_file()
    assert first.warnings and "'me' has 1" in first.warnings[0]  # a flat folder is one identity, named after it

    # Now a FaceStudio dataset: a re-run goes in without --overwrite and replaces the previous items.
    assert is_dataset_folder(out)
    (photos / "obama.jpg").unlink()
    shutil.copy(faces_dir / "obama2.jpg", photos)
    prepare_dataset(photos, out, analyzer, PrepareSettings(class_word="man"))
    assert sorted(p.name for p in (out / "images" / "me").iterdir()) == ["000_obama2.png"]
    assert [item.caption for item in load_manifest(out).items] == ["a photo of a man"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUT_FOLDERS, ".facestudio-dataset", "manifest.json",
                                                            "notes.txt", "report.json"])
    # Folder names alone do not make a dataset: someone's own images/ is not replaced without --overwrite.
    mine = tmp_path / "mine"
    (mine / "images").mkdir(parents=True)
    assert not is_dataset_folder(mine)


def test_nothing_kept_writes_nothing(analyzer, tmp_path):
    photos = tmp_path / "walls"
    photos.mkdir()
    noise().save(photos / "noise.png")
    (photos / "empty.jpg").write_bytes(b"")
    report = prepare_dataset(photos, tmp_path / "ds", analyzer, PrepareSettings())
    assert not report.written and not report.kept
    assert {item.reason for item in report.items} == {"no_face", "broken"}
    assert not (tmp_path / "ds").exists()


def test_refusals_before_any_work(analyzer, photos, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        prepare_dataset(tmp_path / "missing", tmp_path / "ds", analyzer, PrepareSettings())
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No photos found"):
        prepare_dataset(tmp_path / "empty", tmp_path / "ds", analyzer, PrepareSettings())
    with pytest.raises(DatasetError, match="inside the photos"):
        check_output_folder(photos / "ds", photos, overwrite=True)
    (tmp_path / "list.csv").write_text("a,b")
    with pytest.raises(DatasetError, match=r"neither a folder nor a \.zip"):
        prepare_dataset(tmp_path / "list.csv", tmp_path / "ds", analyzer, PrepareSettings())
    for bad in ({"face_fraction": 1.5}, {"size": 500}, {"pad": "wrap"}, {"class_word": " "}, {"min_sharpness": -1}):
        with pytest.raises(DatasetError):
            PrepareSettings(**bad)


def test_crop_padding_modes_and_coordinates():
    """A face at the photo's corner: the crop reaches outside, padded as asked, and points map exactly."""
    pixels = np.full((200, 300, 3), 100, np.uint8)
    pixels[:20, :20] = 250
    kps = np.array([[20.0, 25], [40, 25], [30, 35], [22, 45], [38, 45]])
    face = Face(bbox=np.array([10.0, 10, 50, 60]), score=0.9, kps=kps)
    black = crop_around_face(pixels, face, PrepareSettings(size=128, pad="black"))
    mirror = crop_around_face(pixels, face, PrepareSettings(size=128, pad="reflect"))
    assert black.pixels.shape == (128, 128, 3) and black.pad_fraction == pytest.approx(1 - 80 * 85 / 100**2)
    assert black.pixels[0, 0].max() == 0 and mirror.pixels[0, 0].min() > 90
    assert np.allclose(black.face.bbox, [38.4, 32.0, 89.6, 96.0])
    assert np.allclose(black.face.kps, (kps - [-20, -15]) * 1.28)
    # The bright corner block lands where the coordinates say it does.
    corner = (np.array([20.0, 20.0]) - [-20, -15]) * 1.28
    assert black.pixels[int(corner[1]) - 2, int(corner[0]) - 2].min() > 240
    assert black.pixels[int(corner[1]) + 2, int(corner[0]) + 2].max() < 110


def test_cli_prepare_json(faces_dir, tmp_path):
    photos = tmp_path / "obama"
    photos.mkdir()
    shutil.copy(faces_dir / "obama.jpg", photos / "one.jpg")
    shutil.copy(faces_dir / "obama2.jpg", photos / "two.jpg")
    (photos / "three.jpg").write_text("broken")
    result = subprocess.run([sys.executable, "-m", "facestudio", "prepare", str(photos), "--out", str(tmp_path / "ds"),
                             "--backend", "mediapipe", "--class-word", "man", "--json"],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=180)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert (payload["photos"], payload["kept"], payload["rejected"], payload["written"]) == (3, 2, 1, True)
    assert {entry["source"]: entry["reason"] for entry in payload["items"]} == {
        "one.jpg": None, "three.jpg": "broken", "two.jpg": None}
    assert payload["warnings"] == [] and payload["settings"]["class_word"] == "man"
    assert load_manifest(tmp_path / "ds").items[0].caption == "a photo of a man"
    assert "Traceback" not in result.stderr
