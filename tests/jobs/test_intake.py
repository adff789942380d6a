"""Photos handed to the studio for training become a queued job at once: uploads are copied into the job, a folder
is used where it is and only from inside the studio's folder. Nothing here looks at a face."""

from __future__ import annotations

import pytest

from facestudio.errors import DatasetError
from facestudio.jobs import RunStage, RunState
from facestudio.jobs.intake import MAX_TRAINING_PHOTOS, inside_home, submit_photo_job
from facestudio.training.config import read_config
from tests.jobs.conftest import fake_config


def test_uploaded_photos_are_copied_into_a_job_queued_to_prepare_them(store, faces_dir):
    photos = [faces_dir / "obama.jpg", faces_dir / "obama2.jpg", faces_dir / "obama.jpg"]
    job = submit_photo_job(store, fake_config().replace(device="cuda:1"), "Barack Obama", photos=photos)
    folder = job.folder
    assert sorted(p.name for p in (folder.photos_dir / "barack-obama").iterdir()) == [
        "001_obama.jpg", "002_obama2.jpg", "003_obama.jpg"]  # one person; the same name twice is kept twice
    assert (folder.photos_dir / "barack-obama" / "002_obama2.jpg").read_bytes() == photos[1].read_bytes()
    config = read_config(folder)
    assert (config.photos, config.dataset) == (str(folder.photos_dir), str(folder.dataset_dir))
    assert (config.steps, config.device) == (6, "cuda:1")  # the rest of the settings as given
    status = store.effective_status(job)
    assert (status.state, status.stage, status.step, status.total) == (RunState.QUEUED, RunStage.PREPARING, 0, 0)
    assert not folder.dataset_dir.exists() and folder.read_prepare_report() is None  # nothing prepared yet
    assert store.next_queued() == job


def test_a_folder_inside_home_is_used_where_it_is(store, home, faces_dir):
    (home / "photos" / "alex").mkdir(parents=True)
    (home / "photos" / "alex" / "a.jpg").write_bytes((faces_dir / "obama.jpg").read_bytes())
    job = submit_photo_job(store, fake_config(), "alex", folder=str(home / "photos" / "alex"))
    config = read_config(job.folder)
    assert config.photos == str((home / "photos" / "alex").resolve())
    assert config.dataset == str(job.folder.dataset_dir) and not job.folder.photos_dir.exists()


def test_a_folder_must_lie_inside_home_and_hold_photos_but_not_the_jobs(store, home, faces_dir):
    with pytest.raises(DatasetError, match="outside the studio's folder"):
        submit_photo_job(store, fake_config(), "x", folder=faces_dir)
    (home / "photos").mkdir(parents=True)
    (home / "photos" / "link").symlink_to(faces_dir)
    with pytest.raises(DatasetError, match="outside the studio's folder"):  # symlinks are followed
        inside_home(home, home / "photos" / "link")
    with pytest.raises(DatasetError, match="outside"):
        inside_home(home, home / ".." / "elsewhere")
    (home / "photos" / "notes").mkdir()
    (home / "photos" / "notes" / "a.txt").write_text("no photo here")
    with pytest.raises(DatasetError, match="holds no photos"):
        submit_photo_job(store, fake_config(), "x", folder=home / "photos" / "notes")
    store.submit_training(fake_config(), "existing")
    for folder in (home, home / "jobs"):
        with pytest.raises(DatasetError, match="holds the studio's jobs"):
            submit_photo_job(store, fake_config(), "x", folder=folder)
    assert [job.name for job in store.list()] == ["existing"]


def test_non_photos_too_many_and_nothing_are_refused_before_a_job_exists(store, tmp_path, faces_dir):
    script = tmp_path / "run.sh"
    script.write_text("echo hi")
    with pytest.raises(DatasetError, match=r"run\.sh is not a photo"):
        submit_photo_job(store, fake_config(), "x", photos=[faces_dir / "obama.jpg", script])
    with pytest.raises(DatasetError, match=f"at most {MAX_TRAINING_PHOTOS} photos"):
        submit_photo_job(store, fake_config(), "x", photos=[faces_dir / "obama.jpg"] * (MAX_TRAINING_PHOTOS + 1))
    with pytest.raises(DatasetError, match="Upload photos"):
        submit_photo_job(store, fake_config(), "x")
    with pytest.raises(DatasetError, match="not both"):
        submit_photo_job(store, fake_config(), "x", photos=[faces_dir / "obama.jpg"], folder=str(store.home))
    with pytest.raises(DatasetError, match=r"gone\.jpg cannot be copied into the job"):
        submit_photo_job(store, fake_config(), "x", photos=[faces_dir / "obama.jpg", tmp_path / "gone.jpg"])
    assert store.list() == [] and list(store.root.iterdir()) == []  # the half-made job is removed
