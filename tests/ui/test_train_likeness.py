"""The Train tab's additions for issue 17: the likeness line from a run's evaluation.json, and the processes option
(a job on several GPUs), the 8-bit optimizer and stepping in the backward pass."""

from __future__ import annotations

import json
import shutil

import pytest

from facestudio.config import StudioSettings


@pytest.fixture
def queued(tmp_path, faces_dir, monkeypatch):
    import facestudio.ui.train_tab
    from facestudio.ui.context import StudioContext, StudioOptions
    from facestudio.ui.train_tab import queue_training

    monkeypatch.setattr(facestudio.ui.train_tab, "one_person", lambda ctx, photos: None)
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    shutil.copy(faces_dir / "obama.jpg", home / "photos")

    def queue(device: str = "cuda", **settings):
        ctx = StudioContext(StudioOptions(StudioSettings(home=home), device=device, run_jobs=False))
        return ctx, queue_training(ctx, None, str(home / "photos"), "Alex", None, "default", steps=4, **settings)

    return queue


def test_likeness_line_reads_the_evaluation(queued):
    from facestudio.ui.train_tab import likeness_line

    ctx, job = queued()
    assert likeness_line(ctx, job.id) == "" and likeness_line(ctx, None) == ""
    report = {"against": "held-out", "before": {"identity": {"mean": 0.41234}}, "after": {"identity": {"mean": 0.5}}}
    (job.folder.root / "evaluation.json").write_text(json.dumps(report))
    assert likeness_line(ctx, job.id) == "likeness on held-out photos: before 0.412 → after 0.500"
    (job.folder.root / "evaluation.json").write_text("{damaged")
    assert likeness_line(ctx, job.id) == ""
    assert likeness_line(ctx, "no-such-job") == ""


def test_processes_reach_the_job(queued):
    from facestudio.errors import InvalidRequestError

    _ctx, job = queued(processes=2.0)
    assert job.processes == 2
    _ctx, job = queued()
    assert job.processes == 1
    with pytest.raises(InvalidRequestError, match="one GPU"):
        queued(device="cuda:1", processes=2)
    with pytest.raises(InvalidRequestError, match="processes"):
        queued(processes=0)


def test_the_eight_bit_optimizer_reaches_the_job_where_bitsandbytes_is_installed(queued, monkeypatch):
    import facestudio.training.config
    from facestudio.errors import FaceStudioError, InvalidRequestError
    from facestudio.training.config import read_config

    monkeypatch.setattr(facestudio.training.config, "eight_bit_available", lambda: True)
    _ctx, job = queued(optimizer="adamw8bit")
    assert read_config(job.folder).optimizer == "adamw8bit"
    monkeypatch.setattr(facestudio.training.config, "eight_bit_available", lambda: False)
    with pytest.raises(FaceStudioError, match=r"adamw8bit needs the bitsandbytes package \(pip install") as caught:
        queued(optimizer="adamw8bit")  # refused when queued, not when the job reaches its optimizer
    assert caught.value.field == "optimizer"
    _ctx, job = queued()
    assert read_config(job.folder).optimizer == "adamw"
    with pytest.raises(InvalidRequestError, match="optimizer must be one of adamw, adamw8bit"):
        queued(optimizer="sgd")


def test_stepping_in_the_backward_pass_reaches_the_job_on_one_process_only(queued):
    from facestudio.errors import FaceStudioError
    from facestudio.training.config import read_config

    _ctx, job = queued(fused_backward=True)
    assert read_config(job.folder).fused_backward is True
    _ctx, job = queued()
    assert read_config(job.folder).fused_backward is False
    with pytest.raises(FaceStudioError, match="`fused_backward` runs on one process, not 2") as caught:
        queued(fused_backward=True, processes=2)  # refused when queued, before any process starts
    assert caught.value.field == "fused_backward"
