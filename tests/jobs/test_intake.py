"""Photos handed to the studio for training become a dataset inside the studio's folder, and only from there."""

from __future__ import annotations

import pytest

from facestudio.errors import DatasetError
from facestudio.jobs.intake import inside_home, prepare_training_photos
from facestudio.training import PrepareSettings, load_manifest


def test_uploaded_photos_become_a_dataset_under_home(tmp_path, analyzer, faces_dir):
    home = tmp_path / "home"
    report = prepare_training_photos(home, "Barack Obama", analyzer, PrepareSettings(size=128),
                                     photos=[faces_dir / "obama.jpg", faces_dir / "obama2.jpg"])
    assert report.written and len(report.kept) == 2
    dataset = home / "datasets"
    assert [p.parent for p in dataset.iterdir()] == [dataset]
    manifest = load_manifest(next(dataset.iterdir()))
    assert {item.identity for item in manifest.items} == {"barack-obama"}  # one person
    again = prepare_training_photos(home, "Barack Obama", analyzer, PrepareSettings(size=128),
                                    photos=[faces_dir / "obama.jpg"])
    assert again.out != report.out  # a second run never replaces the first


def test_a_folder_must_lie_inside_home(tmp_path, analyzer, faces_dir):
    home = tmp_path / "home"
    with pytest.raises(DatasetError, match="outside the studio's folder"):
        prepare_training_photos(home, "x", analyzer, PrepareSettings(), folder=faces_dir)
    (home / "photos").mkdir(parents=True)
    (home / "photos" / "link").symlink_to(faces_dir)
    with pytest.raises(DatasetError, match="outside the studio's folder"):  # symlinks are followed
        inside_home(home, home / "photos" / "link")
    with pytest.raises(DatasetError, match="outside"):
        inside_home(home, home / ".." / "elsewhere")


def test_non_photos_and_nothing_are_refused(tmp_path, analyzer):
    home = tmp_path / "home"
    script = tmp_path / "run.sh"
    script.write_text("echo hi")
    with pytest.raises(DatasetError, match=r"run\.sh is not a photo"):
        prepare_training_photos(home, "x", analyzer, PrepareSettings(), photos=[script])
    assert not any((home / "uploads" / "train").iterdir())  # the partial copy is removed
    with pytest.raises(DatasetError, match="Upload photos"):
        prepare_training_photos(home, "x", analyzer, PrepareSettings())
