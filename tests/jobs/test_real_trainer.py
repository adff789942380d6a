"""The runner with the real trainer on the tiny models: a job queued from photos (queued at once; it prepares them,
then trains), cancel with a checkpoint, the next job (a prepared dataset, as `train --job` queues), resume to done.
It checks the run-folder contract from both sides (about a minute on a CPU)."""

from __future__ import annotations

from facestudio.jobs import JobRunner, JobStore, RunStage, RunState
from facestudio.jobs.intake import submit_photo_job
from tests.jobs.conftest import wait_for


def test_photos_prepare_train_cancel_then_resume_with_the_real_trainer(tmp_path, train_config, faces_dir):
    store = JobStore(tmp_path / "home")
    photos = [faces_dir / "obama.jpg", faces_dir / "obama2.jpg", faces_dir / "astronaut.png"]
    long = submit_photo_job(store, train_config(steps=12, checkpoint_every=100).replace(face_backend="mediapipe"),
                            "long", photos=photos)
    assert (long.status().state, long.status().stage) == (RunState.QUEUED, RunStage.PREPARING)
    short = store.submit_training(train_config(steps=2), "short")
    runner = JobRunner(store, poll_seconds=0.1)
    runner.start()
    try:
        preparing = wait_for(lambda: (s := long.folder.read_status()).stage == RunStage.PREPARING and s.total and s,
                             timeout=120, what="the job to count its photos")
        assert preparing.state == RunState.RUNNING and preparing.total == 3
        wait_for(lambda: (s := long.folder.read_status()).stage == RunStage.TRAINING and s.step >= 2, timeout=180,
                 what="two steps of the real trainer")
        report = long.folder.read_prepare_report()
        assert (report["complete"], report["kept"], report["rejected"]) == (True, 2, 1)
        assert store.cancel(long.id).state == RunState.CANCELLING
        wait_for(lambda: store.effective_status(short).state == RunState.DONE, timeout=180, what="the next job")
        cancelled = long.folder.read_status()
        assert cancelled.state == RunState.CANCELLED
        assert long.folder.latest_checkpoint()[0] == cancelled.checkpoint_step >= 2

        store.resume(long.id)
        runner.wake()
        wait_for(lambda: store.effective_status(long).state in (RunState.DONE, RunState.FAILED), timeout=300,
                 what="the resume")
    finally:
        runner.stop(timeout_seconds=30)
    done = long.folder.read_status()
    assert done.state == RunState.DONE, done.error
    assert done.step == 12 and long.folder.adapter_path.is_file() and short.folder.adapter_path.is_file()
    assert [row["step"] for row in long.folder.read_metrics()] == list(range(1, 13))  # each step once
    log = long.folder.log_path.read_text()
    assert f"from step {cancelled.checkpoint_step}" in log
    assert log.count("Prepared 2 of 3 photo(s)") == 1  # the resume did not prepare again
