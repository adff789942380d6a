"""`facestudio.jobs.status`: what a reader sees of a job, and that it alone writes a corrected status back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import facestudio.jobs.status as status_module
from facestudio.jobs import RunState, RunStatus, effective_status
from facestudio.jobs.status import settle, settle_exit
from facestudio.training.run import RunFolder
from tests.jobs.conftest import fake_config
from tests.jobs.test_store import dead_pid


def checkpoint(folder: RunFolder, step: int) -> None:
    folder.checkpoint_path(step).mkdir(parents=True)
    (folder.checkpoint_path(step) / "state.json").write_text("{}")


def test_a_dead_trainer_is_interrupted_and_only_the_status_module_writes_that_back(store, make_runner,
                                                                                  monkeypatch):
    writers: list[tuple[RunState, str]] = []
    original = RunFolder.write_status

    def recording(folder, status):
        import inspect

        writers.append((status.state, Path(inspect.stack()[1].filename).name))
        return original(folder, status)

    monkeypatch.setattr(RunFolder, "write_status", recording)
    seen_by_reader = store.submit_training(fake_config(), "reader")
    seen_by_runner = store.submit_training(fake_config(), "runner")
    for job in (seen_by_reader, seen_by_runner):
        job.folder.write_status(RunStatus(state=RunState.RUNNING, pid=dead_pid(), step=4, total=6))
    checkpoint(seen_by_reader.folder, 3)
    writers.clear()

    view = effective_status(seen_by_reader.folder)  # a plain read never writes
    assert view.state == RunState.INTERRUPTED and view.error.endswith("resuming continues from step 3.")
    assert seen_by_reader.folder.read_status().state == RunState.RUNNING
    assert writers == []

    assert store.effective_status(seen_by_reader).state == RunState.INTERRUPTED  # no runner: the reader settles it
    assert make_runner().run_until_idle() == []  # the runner settles the other on its way through the queue
    assert [job.folder.read_status().state for job in (seen_by_reader, seen_by_runner)] == [RunState.INTERRUPTED] * 2
    assert writers == [(RunState.INTERRUPTED, "status.py")] * 2


def test_a_trainer_that_wrote_since_the_read_is_not_overwritten(store, monkeypatch):
    job = store.submit_training(fake_config(), "x")
    job.folder.write_status(RunStatus(state=RunState.RUNNING, pid=dead_pid(), total=6))
    stale = effective_status(job.folder)
    time.sleep(0.01)
    job.folder.write_status(RunStatus(state=RunState.DONE, step=6, total=6))  # the trainer came back and finished
    monkeypatch.setattr(status_module, "effective_status", lambda folder: stale)
    settle(job.folder, store.home)
    assert job.folder.read_status().state == RunState.DONE


@pytest.mark.parametrize("text", ['{"state": "exploded", "step": 2}', '{"state": ["running"]}', "{not json",
                                  '["running"]', '{"state": "running", "stage": "baking"}'])
def test_a_damaged_status_reads_as_failed_and_never_raises(store, text):
    job = store.submit_training(fake_config(), "x")
    job.folder.status_path.write_text(text)
    for status in (job.folder.read_status(), effective_status(job.folder), store.effective_status(job)):
        assert status.state == RunState.FAILED and "status.json is damaged" in status.error  # no machine path: the studio shows it
    assert job.to_dict()["status"]["state"] == "failed"
    assert [j.id for j in store.list()] == [job.id] and store.next_queued() is None
    assert job.folder.status_path.read_text() == text  # a reader does not rewrite what it cannot read


def test_after_the_process_exits_the_verdict_follows_what_happened(store):
    job = store.submit_training(fake_config(), "x")
    folder = job.folder
    launched = time.time()

    def ended(stored: RunStatus, *, stopped=False, cancel=False, step=None):
        folder.write_status(stored)
        folder.clear_cancel()
        if cancel:
            folder.request_cancel()
        if step is not None and not folder.checkpoint_path(step).exists():
            checkpoint(folder, step)
        return settle_exit(folder, launched_at=launched, stopped=stopped, exit_error="it crashed.")

    assert ended(RunStatus(state=RunState.DONE, step=6, total=6)).state == RunState.DONE  # its own word stands
    failed = ended(RunStatus(state=RunState.RUNNING, pid=dead_pid(), total=6))
    assert (failed.state, failed.error) == (RunState.FAILED, "it crashed.")
    assert ended(RunStatus(state=RunState.RUNNING, total=6), cancel=True).state == RunState.FAILED  # no checkpoint
    cancelled = ended(RunStatus(state=RunState.RUNNING, total=6), cancel=True, step=2)
    assert (cancelled.state, cancelled.checkpoint_step) == (RunState.CANCELLED, 2)
    stopped = ended(RunStatus(state=RunState.RUNNING, total=6), stopped=True)
    assert stopped.state == RunState.INTERRUPTED and stopped.error.endswith("continues from step 2.")
    assert folder.read_status() == stopped
    assert ended(RunStatus(state=RunState.QUEUED, total=6)) is None  # re-queued meanwhile: it runs again
    assert folder.read_status().state == RunState.QUEUED
