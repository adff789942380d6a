"""The runner with the real trainer on the tiny models: queue, cancel with a checkpoint, the next job, resume to
done. It checks the run-folder contract from both sides (about 30 s on a CPU)."""

from __future__ import annotations

from facestudio.jobs import JobRunner, JobStore, RunState
from tests.jobs.conftest import wait_for


def test_cancel_then_resume_with_the_real_trainer(tmp_path, train_config):
    store = JobStore(tmp_path / "home")
    long = store.submit_training(train_config(steps=12, checkpoint_every=100), "long")
    short = store.submit_training(train_config(steps=2), "short")
    runner = JobRunner(store, poll_seconds=0.1)
    runner.start()
    try:
        wait_for(lambda: long.folder.read_status().step >= 2, timeout=180, what="two steps of the real trainer")
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
    assert f"from step {cancelled.checkpoint_step}" in long.folder.log_path.read_text()
