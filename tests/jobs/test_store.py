"""JobStore: ids, submitting, listing, cancelling a queued job, resuming, and the interrupted verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from filelock import FileLock

from facestudio.errors import JobError, TrainingError
from facestudio.jobs import JOB_ID_PATTERN, JobStore, RunState, RunStatus, check_job_id, runner_active
from facestudio.jobs.lock import runner_lock_path
from tests.jobs.conftest import fake_config


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("job_id", ["../x", "a/b", "..", "", "/etc/passwd", "20261121-153012-a/../../x",
                                    "20261121-153012-A", "20261121-153012-a\\b", "20261121-153012-", "x" * 200,
                                    "20261121-153012-a\n"])
def test_ids_from_users_are_refused(store, job_id):
    with pytest.raises(JobError, match="is not a job id"):
        store.get(job_id)
    with pytest.raises(JobError):
        store.cancel(job_id)
    with pytest.raises(JobError):
        store.resume(job_id)


def test_unknown_but_wellformed_id_says_how_to_list(store):
    with pytest.raises(JobError, match=r"^no job 20990101-000000-nope; `python -m facestudio jobs list` lists them"):
        store.get("20990101-000000-nope")


def test_submit_makes_a_queued_run_folder_with_job_json(store, home):
    job = store.submit_training(fake_config(), "Anna's first run!")
    assert JOB_ID_PATTERN.fullmatch(job.id) and job.id.endswith("-anna-s-first-run")
    assert job.folder.root == home / "jobs" / job.id
    assert check_job_id(job.id) == job.id
    recorded = json.loads((job.folder.root / "job.json").read_text())
    assert recorded == {"id": job.id, "kind": "train", "name": "Anna's first run!", "created_at": job.created_at}
    assert json.loads(job.folder.config_path.read_text())["dataset"] == "fake:ok"
    status = store.effective_status(job)
    assert (status.state, status.step, status.total) == (RunState.QUEUED, 0, 6)
    assert store.get(job.id) == job
    assert job.to_dict()["status"]["state"] == RunState.QUEUED and job.to_dict()["adapter"] is None


def test_same_name_same_second_gets_distinct_ids_and_list_is_newest_first(store):
    jobs = [store.submit_training(fake_config(), "same") for _ in range(3)]
    assert len({job.id for job in jobs}) == 3
    assert [job.id for job in store.list()] == [job.id for job in reversed(jobs)]
    assert store.next_queued() == jobs[0]


def test_a_bad_config_leaves_no_folder(store, home):
    with pytest.raises(TrainingError, match="`steps` must be"):
        store.submit_training(fake_config(steps=0), "bad")
    assert store.list() == []
    assert not (home / "jobs").exists() or list((home / "jobs").iterdir()) == []


def test_folders_without_job_json_are_not_jobs(store, home):
    (home / "jobs" / "20261121-153012-half").mkdir(parents=True)
    (home / "jobs" / "not-a-job").mkdir()
    assert store.list() == [] and store.next_queued() is None


def test_cancel_a_queued_job_cancels_it_without_running(store):
    first = store.submit_training(fake_config(), "first")
    second = store.submit_training(fake_config(), "second")
    status = store.cancel(first.id)
    assert status.state == RunState.CANCELLED and status.finished_at is not None
    assert first.folder.read_status().state == RunState.CANCELLED
    assert store.next_queued() == second
    with pytest.raises(JobError, match=r"already ended \(cancelled\).*jobs resume"):
        store.cancel(first.id)


def test_resume_refuses_done_queued_and_running_jobs(store):
    job = store.submit_training(fake_config(), "x")
    with pytest.raises(JobError, match="already queued"):
        store.resume(job.id)
    job.folder.write_status(RunStatus(state=RunState.RUNNING, pid=os.getpid(), total=6))  # this process: alive
    with pytest.raises(JobError, match="is running; cancel it first"):
        store.resume(job.id)
    job.folder.adapter_path.write_bytes(b"x")
    job.folder.write_status(RunStatus(state=RunState.DONE, step=6, total=6))
    with pytest.raises(JobError, match=f"is done; its adapter is at {job.folder.adapter_path}"):
        store.resume(job.id)
    with pytest.raises(JobError, match=r"already ended \(done\); there is nothing to cancel\.$"):
        store.cancel(job.id)


def test_cancel_a_running_job_asks_the_trainer_and_reads_as_cancelling(store):
    job = store.submit_training(fake_config(), "x")
    job.folder.write_status(RunStatus(state=RunState.RUNNING, pid=os.getpid(), step=2, total=6))
    status = store.cancel(job.id)
    assert status.state == RunState.CANCELLING and job.folder.cancel_requested()
    assert job.folder.read_status().state == RunState.RUNNING  # status.json stays the trainer's to write


def test_running_with_a_dead_pid_is_interrupted_and_written_back_only_without_a_runner(store, home):
    job = store.submit_training(fake_config(), "x")
    job.folder.write_status(RunStatus(state=RunState.RUNNING, pid=dead_pid(), step=4, total=6, started_at=time.time()))
    (job.folder.checkpoint_path(3)).mkdir(parents=True)
    (job.folder.checkpoint_path(3) / "state.json").write_text("{}")

    holder = FileLock(runner_lock_path(home), timeout=0, thread_local=False)
    runner_lock_path(home).parent.mkdir(parents=True, exist_ok=True)
    holder.acquire()
    try:
        assert runner_active(home)
        status = store.effective_status(job)
        assert status.state == RunState.INTERRUPTED and "from step 3" in status.error
        assert job.folder.read_status().state == RunState.RUNNING  # the runner owns this verdict while it holds it
    finally:
        holder.release()
    assert not runner_active(home)
    assert [store.effective_status(j).state for j in store.list()] == [RunState.INTERRUPTED]
    assert job.folder.read_status().state == RunState.INTERRUPTED  # persisted: true after this process ends too

    job.folder.request_cancel()
    resumed = store.resume(job.id)
    status = resumed.folder.read_status()
    assert (status.state, status.step, status.checkpoint_step, status.error) == (RunState.QUEUED, 3, 3, None)
    assert not job.folder.cancel_requested()
    assert store.next_queued() == job


def test_a_pid_reused_by_a_newer_process_does_not_count_as_the_trainer(store):
    """After a reboot, the trainer's old pid may belong to some other process started since."""
    job = store.submit_training(fake_config(), "x")
    newcomer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        long_ago = time.time() - 3600
        job.folder.write_status(RunStatus(state=RunState.RUNNING, pid=newcomer.pid, total=6, started_at=long_ago))
        assert store.effective_status(job).state == RunState.INTERRUPTED
        job.folder.write_status(RunStatus(state=RunState.RUNNING, pid=newcomer.pid, total=6, started_at=time.time()))
        assert store.effective_status(job).state == RunState.RUNNING
    finally:
        newcomer.kill()
        newcomer.wait()


def test_a_fresh_store_sees_no_runner_and_no_jobs(tmp_path):
    store = JobStore(tmp_path / "nowhere")
    assert store.list() == [] and store.next_queued() is None
    assert not runner_active(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_importing_jobs_loads_neither_torch_nor_the_engine():
    code = ("import sys, facestudio.jobs, facestudio.cli.jobs; "
            "print(sorted(m for m in ('torch', 'gradio', 'diffusers', 'facestudio.engine') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
