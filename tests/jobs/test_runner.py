"""JobRunner with the fake trainer: one job at a time, cancel, crashes and kills, interrupted jobs, one runner
per home across processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import facestudio.jobs.runner as runner_module
from facestudio.errors import JobError
from facestudio.jobs import RunState, RunStatus, runner_active
from facestudio.jobs.store import JobStore
from facestudio.training.run import pid_alive
from tests.jobs.conftest import WAIT_SECONDS, fake_config, wait_for
from tests.jobs.test_store import dead_pid


def trace(job) -> list[dict]:
    path = job.folder.root / "trace.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def state(store, job) -> str:
    return store.effective_status(job).state


def test_two_jobs_run_one_at_a_time_in_submission_order(store, make_runner):
    unloads: list[float] = []
    first = store.submit_training(fake_config(steps=8), "first")
    second = store.submit_training(fake_config(steps=8), "second")
    events: list[tuple[str, str, int]] = []
    runner = make_runner(before_start=lambda: unloads.append(time.time()),
                         on_update=lambda job, status: events.append((job.id, status.state, status.step)))
    runner.start()
    wait_for(lambda: state(store, second) == RunState.DONE, what="the second job to finish")
    a, b = first.folder.read_status(), second.folder.read_status()
    assert a.state == b.state == RunState.DONE and a.step == b.step == 8
    assert first.folder.adapter_path.is_file() and second.folder.adapter_path.is_file()
    assert a.started_at < a.finished_at <= b.started_at < b.finished_at  # never both running
    assert len(unloads) == 2 and unloads[1] >= a.finished_at  # the GPU is freed before each start
    assert "fake trainer fake:ok: from step 0" in first.folder.log_path.read_text()  # stdout goes to train.log
    wait_for(lambda: len(events) >= 2 and events[-1] == (second.id, RunState.DONE, 8), what="the last progress event")
    assert [event for event in events if event[1] == RunState.DONE] == [(first.id, RunState.DONE, 8),
                                                                  (second.id, RunState.DONE, 8)]
    assert [job_id for job_id, _, _ in events] == sorted(job_id for job_id, _, _ in events)  # first's, then second's
    runner.stop()
    assert not runner_active(store.home)


def test_a_cancelled_queued_job_never_starts(store, make_runner):
    skipped = store.submit_training(fake_config(), "skipped")
    ran = store.submit_training(fake_config(), "ran")
    store.cancel(skipped.id)
    assert [job.id for job in make_runner().run_until_idle()] == [ran.id]
    assert trace(skipped) == [] and skipped.folder.read_status().started_at is None
    assert state(store, skipped) == RunState.CANCELLED and state(store, ran) == RunState.DONE


def test_a_queued_job_with_a_cancel_request_is_not_started(store, make_runner):
    """`cancel` writes the request before the status; a runner between the two writes must not start the job."""
    job = store.submit_training(fake_config(), "x")
    job.folder.request_cancel()
    assert make_runner().run_until_idle() == [job]
    assert trace(job) == [] and job.folder.read_status().state == RunState.CANCELLED


def test_cancel_a_running_job_checkpoints_then_the_queue_goes_on_and_resume_continues(store, make_runner):
    slow = store.submit_training(fake_config("slow", steps=30, checkpoint_every=1000), "slow")
    after = store.submit_training(fake_config(), "after")
    runner = make_runner()
    runner.start()
    wait_for(lambda: slow.folder.read_status().step >= 2, what="two steps of the slow job")
    assert runner.current == slow
    assert store.cancel(slow.id).state == RunState.CANCELLING
    wait_for(lambda: state(store, after) == RunState.DONE, what="the next job to run after the cancel")
    status = slow.folder.read_status()
    assert status.state == RunState.CANCELLED and status.checkpoint_step >= 2
    assert slow.folder.latest_checkpoint()[0] == status.checkpoint_step
    assert trace(after)[0]["at"] >= status.finished_at

    slow.folder.write_config_dict({**slow.folder.read_config_dict(), "dataset": "fake:ok"})  # finish quickly now
    store.resume(slow.id)
    runner.wake()
    wait_for(lambda: state(store, slow) == RunState.DONE, what="the resumed job to finish")
    assert [start["from_step"] for start in trace(slow)] == [0, status.checkpoint_step]


def test_a_process_that_exits_without_a_final_status_is_failed_with_its_last_log_line(store, make_runner):
    job = store.submit_training(fake_config("crash"), "crash")
    make_runner().run_until_idle()
    status = job.folder.read_status()
    assert status.state == RunState.FAILED and status.finished_at is not None
    assert status.error.startswith("the training process exited with code 1 without finishing")
    assert "RuntimeError: boom" in status.error and status.error.endswith(f"see {job.folder.log_path}.")
    assert store.resume(job.id).status().state == RunState.QUEUED  # failed jobs can be resumed


def test_a_killed_trainer_is_failed_and_the_runner_carries_on(store, make_runner):
    job = store.submit_training(fake_config("slow", steps=200), "victim")
    after = store.submit_training(fake_config(), "after")
    make_runner().start()
    status = wait_for(lambda: (s := job.folder.read_status()).state == RunState.RUNNING and s.pid and s, what="running")
    os.kill(status.pid, signal.SIGKILL)
    wait_for(lambda: state(store, after) == RunState.DONE, what="the job after the killed one")
    status = job.folder.read_status()
    assert status.state == RunState.FAILED and "killed by SIGKILL" in status.error and "train.log" in status.error


def test_an_interrupted_job_is_recorded_by_the_runner_and_runs_again_after_resume(store, make_runner):
    job = store.submit_training(fake_config(steps=6, checkpoint_every=3), "x")
    job.folder.write_status(RunStatus(state=RunState.RUNNING, pid=dead_pid(), step=4, total=6))
    (job.folder.checkpoint_path(3)).mkdir(parents=True)
    (job.folder.checkpoint_path(3) / "state.json").write_text("{}")
    runner = make_runner()
    assert runner.run_until_idle() == []  # nothing queued; the dead trainer's job is not waited for
    assert job.folder.read_status().state == RunState.INTERRUPTED
    store.resume(job.id)
    assert runner.run_until_idle() == [job]
    assert state(store, job) == RunState.DONE and [start["from_step"] for start in trace(job)] == [3]


def test_a_trainer_left_by_an_earlier_runner_is_waited_for(store, make_runner):
    orphan = store.submit_training(fake_config(), "orphan")
    queued = store.submit_training(fake_config(), "queued")
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        orphan.folder.write_status(RunStatus(state=RunState.RUNNING, pid=stand_in.pid, step=1, total=6))
        make_runner().start()
        time.sleep(0.5)
        assert state(store, queued) == RunState.QUEUED  # one job at a time, even across runners
    finally:
        stand_in.kill()
        stand_in.wait()
    wait_for(lambda: state(store, queued) == RunState.DONE, what="the queued job once the earlier trainer is gone")
    assert orphan.folder.read_status().state == RunState.INTERRUPTED


def test_stop_cancels_the_running_job_and_frees_the_home(store, make_runner):
    job = store.submit_training(fake_config("slow", steps=200, checkpoint_every=1000), "x")
    runner = make_runner()
    runner.start()
    wait_for(lambda: job.folder.read_status().step >= 1, what="a step")
    runner.stop(cancel_running=True, timeout_seconds=5)
    status = job.folder.read_status()
    assert status.state == RunState.CANCELLED and status.checkpoint_step is not None
    assert not runner.running and not runner_active(store.home)


def test_stop_terminates_a_trainer_that_ignores_the_cancel_request(store, make_runner):
    job = store.submit_training(fake_config("stubborn", steps=200, checkpoint_every=1000), "x")
    runner = make_runner()
    runner.start()
    wait_for(lambda: job.folder.read_status().step >= 1, what="a step")
    began = time.monotonic()
    runner.stop(timeout_seconds=0.5)
    assert time.monotonic() - began < 5
    status = job.folder.read_status()
    assert status.state == RunState.CANCELLED and status.checkpoint_step is not None  # SIGTERM: a cancel, by contract


def test_stop_kills_a_trainer_deaf_to_everything_and_records_it_interrupted(store, make_runner, monkeypatch):
    monkeypatch.setattr(runner_module, "_KILL_AFTER_SECONDS", 0.5)
    job = store.submit_training(fake_config("deaf", steps=200, checkpoint_every=1000), "x")
    runner = make_runner()
    runner.start()
    status = wait_for(lambda: (s := job.folder.read_status()).step >= 1 and s, what="a step")
    runner.stop(timeout_seconds=0.3)
    assert not pid_alive(status.pid)
    status = job.folder.read_status()
    assert status.state == RunState.INTERRUPTED
    assert status.error.startswith("the studio stopped before the training process")
    assert store.resume(job.id).status().state == RunState.QUEUED


def test_stop_while_the_gpu_is_being_freed_launches_nothing(store, make_runner):
    job = store.submit_training(fake_config(), "x")
    freeing = threading.Event()

    def slow_unload():
        freeing.set()
        time.sleep(0.3)

    runner = make_runner(before_start=slow_unload)
    runner.start()
    assert freeing.wait(WAIT_SECONDS)
    runner.stop()
    assert state(store, job) == RunState.QUEUED and trace(job) == []


def test_stop_without_cancel_leaves_the_trainer_running(store, make_runner):
    job = store.submit_training(fake_config("slow", steps=200, checkpoint_every=1000), "x")
    runner = make_runner()
    runner.start()
    wait_for(lambda: job.folder.read_status().state == RunState.RUNNING, what="running")
    runner.stop(cancel_running=False)
    assert not runner_active(store.home)
    wait_for(lambda: job.folder.read_status().step >= 2, what="steps after the runner stopped")
    assert state(store, job) == RunState.RUNNING
    store.cancel(job.id)
    wait_for(lambda: state(store, job) == RunState.CANCELLED, what="the detached trainer to honour the cancel")


def test_only_one_runner_per_home_across_processes(store, make_runner, home):
    first = make_runner()
    first.start()
    with pytest.raises(JobError, match="already running the jobs in"):
        make_runner().start()
    with pytest.raises(JobError, match="already running the jobs in"):
        make_runner().run_until_idle()
    with pytest.raises(JobError, match="already running"):
        first.start()
    first.stop()

    code = ("import sys, time; from facestudio.jobs import JobRunner, JobStore; "
            "JobRunner(JobStore(sys.argv[1])).start(); print('holding', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(home)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert runner_active(home)
        with pytest.raises(JobError, match="already running the jobs in"):
            make_runner(store=JobStore(home)).start()
    finally:
        holder.kill()  # a crashed studio: the OS drops its lock
        holder.wait()
    assert not runner_active(home)
    make_runner().start()
