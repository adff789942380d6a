"""A job on several processes: recorded in job.json, started through torchrun, and a one-process job unchanged."""

from __future__ import annotations

import json
import sys

import pytest

from facestudio.errors import JobError
from facestudio.jobs.runner import trainer_command
from facestudio.training.run import RunState
from tests.jobs.conftest import fake_command, fake_config, wait_for


def test_a_job_on_two_processes_is_started_through_torchrun(store, make_runner):
    job = store.submit_training(fake_config(steps=2), "wide", processes=2)
    assert json.loads((job.folder.root / "job.json").read_text())["processes"] == 2
    assert store.get(job.id).processes == 2 and store.get(job.id).to_dict()["processes"] == 2
    calls = []

    def command_for(root, processes=1):
        calls.append(processes)
        return fake_command(root)

    runner = make_runner(command_for=command_for)
    runner.start()
    wait_for(lambda: store.effective_status(job).state == RunState.DONE, what="the job to finish")
    runner.stop()
    assert calls == [2]
    command = trainer_command(job.folder.root, 2)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert command[command.index("--nproc_per_node") + 1] == "2"
    assert command[-4:] == ["-m", "facestudio.training.train_fact", "--resume", str(job.folder.root)]
    assert trainer_command(job.folder.root) == [sys.executable, "-m", "facestudio.training.train_fact", "--resume",
                                                str(job.folder.root)]


def test_processes_must_be_at_least_one(store):
    with pytest.raises(JobError, match="`processes` must be") as caught:
        store.submit_training(fake_config(), "none", processes=0)
    assert caught.value.field == "processes"
    assert store.list() == []


def test_the_command_line_queues_processes_only_with_job(tmp_path, monkeypatch, capsys, train_config):
    from facestudio.cli import build_parser
    from facestudio.jobs import JobStore

    home = tmp_path / "home"
    monkeypatch.setenv("FACESTUDIO_HOME", str(home))
    dataset = train_config().dataset
    args = build_parser().parse_args(["train", dataset, "--cpu", "--job", "--processes", "2"])
    assert args.handler(args) == 0
    (job,) = JobStore(home).list()
    assert job.processes == 2
    args = build_parser().parse_args(["train", dataset, "--out", str(tmp_path / "run"), "--processes", "2"])
    assert args.handler(args) == 1
    assert "--processes sets a background job's processes; add --job" in capsys.readouterr().err
