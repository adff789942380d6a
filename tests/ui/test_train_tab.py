"""A Train click checks that the photos show one person, copies them into a new job and queues it: no model but
the face analyzer, and the job gets the studio's device and face detector as the studio was started with them."""

from __future__ import annotations

import shutil

import pytest

from facestudio.config import StudioSettings
from facestudio.jobs import RunStage, RunState
from facestudio.training.config import read_config


def test_a_train_click_queues_a_job_after_the_one_person_check(tmp_path, faces_dir, monkeypatch):
    import facestudio.ui.train_tab
    from facestudio.ui.context import StudioContext, StudioOptions
    from facestudio.ui.train_tab import jobs_table, queue_training, report_table

    checked = []
    monkeypatch.setattr(facestudio.ui.train_tab, "one_person", lambda ctx, photos: checked.append(len(photos)))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    home = tmp_path / "home"
    uploads = tmp_path / "gradio" / "abc"
    uploads.mkdir(parents=True)
    photos = [shutil.copy(faces_dir / name, uploads / name) for name in ("obama.jpg", "obama2.jpg")]
    ctx = StudioContext(StudioOptions(StudioSettings(home=home), device="cuda:1", backend="mediapipe", run_jobs=False))

    job = queue_training(ctx, [str(path) for path in photos], "", "  Alex  ", None, "default", steps=8.0, lr=0.001,
                         fair_weight=0.01, drop_prob=0.05, shuffle_prob=0.5, curriculum=True, resolution=64.0,
                         batch_size=2.0, checkpoint_every=4.0, sample_every=0.0)

    assert not ctx.engine_started and checked == [2]  # the different-person check ran (the real one: test_privacy)
    config = read_config(job.folder)
    assert (config.device, config.face_backend, config.steps, config.resolution) == ("cuda:1", "mediapipe", 8, 64)
    assert sorted(p.name for p in (job.folder.photos_dir / "alex").iterdir()) == ["001_obama.jpg", "002_obama2.jpg"]
    status = ctx.jobs.effective_status(job)
    assert (status.state, status.stage) == (RunState.QUEUED, RunStage.PREPARING)
    assert jobs_table(ctx).values.tolist() == [[job.id, "Alex", "queued", "photos to check", "", "", ""]]
    assert report_table(job).empty  # the photo check is the job's first stage, not the click's


def test_a_bad_setting_is_refused_before_a_job_exists(tmp_path, faces_dir):
    from facestudio.errors import TrainingError
    from facestudio.ui.context import StudioContext, StudioOptions
    from facestudio.ui.train_tab import queue_training

    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    shutil.copy(faces_dir / "obama.jpg", home / "photos")
    ctx = StudioContext(StudioOptions(StudioSettings(home=home), device="tpu", run_jobs=False))
    with pytest.raises(TrainingError, match="`device` must be auto, cpu, mps, cuda or cuda:N; got 'tpu'"):
        queue_training(ctx, None, str(home / "photos"), "Alex", None, "default", steps=4)
    assert ctx.jobs.list() == [] and not ctx.engine_started
