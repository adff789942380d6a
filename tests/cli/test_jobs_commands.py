"""`python -m facestudio jobs ...`: output, JSON, exit codes, and resume running the queue in the terminal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

import facestudio.jobs.runner as runner_module
from facestudio.cli import build_parser
from facestudio.errors import JobError
from facestudio.jobs import RunState, RunStatus
from tests.conftest import REPO_ROOT
from tests.jobs.conftest import fake_command, fake_config
from tests.jobs.test_store import dead_pid


@pytest.fixture
def cli(home, monkeypatch):
    """Run `jobs ...` in this process, on `home`, with the fake trainer as the default command."""
    monkeypatch.setenv("FACESTUDIO_HOME", str(home))
    monkeypatch.setattr(runner_module, "trainer_command", fake_command)
    monkeypatch.setattr("facestudio.cli.jobs.PROGRESS_EVERY_SECONDS", 0.0)
    monkeypatch.setattr("facestudio.cli.jobs.POLL_SECONDS", 0.02)

    def run(*argv: str) -> int:
        args = build_parser().parse_args(["jobs", *argv])
        return args.handler(args)

    return run


def test_the_command_line_in_a_real_process(store, home):
    """JSON output, exit codes and one-line errors as a user sees them (two processes at once: each pays for the
    CLI's start-up)."""
    kept = store.submit_training(fake_config(), "kept")
    env = {**os.environ, "FACESTUDIO_HOME": str(home)}
    commands = {"list": ["jobs", "list", "--json"], "unknown": ["jobs", "show", "20990101-000000-nope"]}
    running = {key: subprocess.Popen([sys.executable, "-m", "facestudio", *argv], cwd=REPO_ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for key, argv in commands.items()}
    done = {key: (*process.communicate(timeout=120), process.returncode) for key, process in running.items()}

    out, err, code = done["list"]
    assert code == 0, err
    assert [(row["id"], row["status"]["state"]) for row in json.loads(out)] == [(kept.id, RunState.QUEUED)]
    out, err, code = done["unknown"]
    assert code == 1 and out == ""
    assert err == "error: no job 20990101-000000-nope; `python -m facestudio jobs list` lists them.\n"


def test_list_table_and_cancel(cli, store, capsys):
    kept = store.submit_training(fake_config(), "kept")
    to_cancel = store.submit_training(fake_config(), "to cancel")
    assert cli("cancel", to_cancel.id) == 0
    assert capsys.readouterr().out.startswith(f"cancelled {to_cancel.id} (it had not started)")
    assert cli() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATE", "STEP", "LOSS", "ETA"]
    assert [line.split()[0] for line in lines[1:]] == [to_cancel.id, kept.id]  # newest first
    assert "cancelled" in lines[1] and "queued" in lines[2] and "0/6" in lines[2]
    with pytest.raises(JobError, match="is not a job id"):
        cli("cancel", "../x")


def test_show_prints_status_settings_checkpoint_and_log(cli, store, capsys):
    job = store.submit_training(fake_config(steps=6, checkpoint_every=3), "shown")
    assert cli("run") == 0
    capsys.readouterr()
    assert cli("show", job.id) == 0
    out = capsys.readouterr().out
    assert f"job         {job.id}  (shown)" in out
    assert "state       done  step 6/6 (100%)  loss 0.1667" in out
    assert "dataset fake:ok" in out and "steps 6" in out
    assert f"checkpoint  step 6 ({job.folder.checkpoint_path(6)})" in out
    assert f"adapter     {job.folder.adapter_path}" in out
    assert "fake trainer fake:ok: from step 0" in out  # the tail of train.log

    assert cli("show", job.id, "--json", "--log-lines", "1") == 0
    details = json.loads(capsys.readouterr().out)
    assert details["status"]["state"] == RunState.DONE and details["checkpoint_step"] == 6
    assert details["adapter"] == str(job.folder.adapter_path) and details["config"]["steps"] == 6
    assert details["last_metrics"]["step"] == 6 and len(details["log_tail"]) == 1


def test_cancel_twice_is_an_error(cli, store):
    job = store.submit_training(fake_config(), "x")
    assert cli("cancel", job.id) == 0
    with pytest.raises(JobError, match="already ended"):
        cli("cancel", job.id)


def test_resume_runs_the_queue_here_with_progress_until_it_is_empty(cli, store, capsys):
    job = store.submit_training(fake_config(steps=20, checkpoint_every=3), "x")
    job.folder.write_status(RunStatus(state=RunState.RUNNING, pid=dead_pid(), step=4, total=20))
    (job.folder.checkpoint_path(3)).mkdir(parents=True)
    (job.folder.checkpoint_path(3) / "state.json").write_text("{}")
    assert cli("resume", job.id) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"queued {job.id} again; it continues from step 3"
    progress = [line for line in out if line.startswith(f"{job.id}  running  step ")]
    assert progress and any(re.search(r"step \d+/20  loss 0\.\d{4}  ETA \dm\d\ds$", line) for line in progress), out
    assert out[-1] == f"{job.id}  done: adapter at {job.folder.adapter_path}"
    assert job.folder.read_status().state == RunState.DONE


def test_resume_no_wait_only_queues(cli, store, capsys):
    job = store.submit_training(fake_config("crash"), "x")
    assert cli("run") == 1  # the job failed
    assert "failed: the training process exited with code 1" in capsys.readouterr().err
    assert cli("resume", job.id, "--no-wait") == 0
    assert job.folder.read_status().state == RunState.QUEUED
    assert (job.folder.root / "trace.jsonl").read_text().count("\n") == 1


def test_list_on_an_empty_home(cli, capsys, home):
    assert cli() == 0
    assert capsys.readouterr().out.strip() == f"no jobs in {home / 'jobs'}"
    assert cli("list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_job_preparing_its_photos_shows_photos_not_steps(cli, store, capsys, faces_dir):
    from facestudio.jobs import RunStage
    from facestudio.jobs.intake import submit_photo_job

    job = submit_photo_job(store, fake_config(), "photos", photos=[faces_dir / "obama.jpg", faces_dir / "biden.jpg"])
    assert cli() == 0
    assert capsys.readouterr().out.splitlines()[1].split()[2:4] == ["queued", "photos"]
    job.folder.write_status(RunStatus(state=RunState.RUNNING, stage=RunStage.PREPARING, pid=os.getpid(), step=1,
                                      total=2, started_at=time.time()))
    job.folder.write_prepare_report({"complete": False, "photos": 2, "kept": 1, "rejected": 0, "items": []})
    assert cli("show", job.id) == 0
    out = capsys.readouterr().out
    assert "state       running  preparing photo 1/2" in out
    assert f"photos      1 kept, 0 rejected so far ({job.folder.prepare_report_path})" in out
    assert cli("list") == 0
    assert "1/2 photos" in capsys.readouterr().out
