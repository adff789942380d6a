"""Training on several processes (torchrun, gloo on the CPU, tiny models): 2 processes x batch 1 reach the adapter
of 1 process x batch 2; a group killed after a checkpoint resumes to it; a cancel stops every process at the same
step, written once; a run resumes on another number of processes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from facestudio.training import RunFolder, RunState
from facestudio.training.train_fact import TrainArgs, run_training
from tests.conftest import REPO_ROOT
from tests.training.conftest import train_argv

#: The adapters may differ by float reduction order only (the gradient all-reduce versus one batched sum).
RELATIVE_TOLERANCE = 1e-4


def torchrun(args: list[str], home: Path, processes: int = 2) -> subprocess.Popen:
    """`torchrun --nproc_per_node N -m facestudio.training.train_fact ARGS` in its own process group."""
    env = {**os.environ, "FACESTUDIO_HOME": str(home), "FACESTUDIO_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
               str(29500 + os.getpid() % 1000), "-m", "facestudio.training.train_fact", *args]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, out + err
    assert "terminate called" not in err
    return err


def update_difference(init: Path, first: Path, second: Path) -> float:
    """|first - second| relative to |first - init|, over all adapter tensors: how far apart two trainings landed,
    measured against how far they moved."""
    start, a, b = load_file(init), load_file(first), load_file(second)
    apart = sum(float((a[k] - b[k]).double().pow(2).sum()) for k in a) ** 0.5
    moved = sum(float((a[k] - start[k].to(a[k].dtype)).double().pow(2).sum()) for k in a) ** 0.5
    assert moved > 0
    return apart / moved


def kill_all(process: subprocess.Popen) -> None:
    """SIGKILL the launcher and its workers at once (torchrun starts each worker in a session of its own)."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == process.pid:
            workers.append(int(stat.parent.name))
    assert len(workers) == 2, workers
    for pid in [process.pid, *workers]:
        os.kill(pid, signal.SIGKILL)


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.02)


@pytest.fixture
def reference_run(tmp_path, train_config, manager, tiny_studio):
    """One process, batch 2, 6 steps, drop and shuffle on (every random decision is exercised)."""
    config = train_config(steps=6, batch_size=2, checkpoint_every=2, drop_prob=0.3, shuffle_prob=0.5,
                          curriculum=False)
    status = run_training(TrainArgs(RunFolder(tmp_path / "one"), config), manager=manager)
    assert status.state == RunState.DONE
    return config, tmp_path / "one" / "adapter.safetensors"


def two_process_argv(config) -> list[str]:
    return [*train_argv(config.replace(batch_size=1)), "--drop-prob", str(config.drop_prob), "--shuffle-prob",
            str(config.shuffle_prob), "--curriculum", "off"]


def test_two_processes_killed_and_resumed_equal_one_process_with_twice_the_batch(tmp_path, reference_run,
                                                                                 training_home, tiny_studio):
    config, one = reference_run
    two = tmp_path / "two"
    # Samples at every step slow this run down enough to kill it mid-way; they do not touch the training.
    process = torchrun([*two_process_argv(config), "--out", str(two), "--sample-every", "1", "--sample-steps", "40"],
                       training_home)
    wait_for(lambda: (two / "checkpoints" / "step-2" / "state.json").exists(), process, "checkpoint")
    kill_all(process)
    process.communicate()
    assert not (two / "adapter.safetensors").exists()

    finish(torchrun(["--resume", str(two)], training_home))
    assert update_difference(tiny_studio.adapter, one, two / "adapter.safetensors") < RELATIVE_TOLERANCE
    run = RunFolder(two)
    assert [row["step"] for row in run.read_metrics()] == list(range(1, 7))  # written once, by process 0
    assert run.read_status().state == RunState.DONE


def test_cancel_stops_every_process_and_another_process_count_resumes(tmp_path, reference_run, training_home,
                                                                      tiny_studio, manager, caplog):
    config, one = reference_run
    two = tmp_path / "two"
    run = RunFolder(two)
    process = torchrun([*two_process_argv(config), "--out", str(two), "--checkpoint-every", "100", "--sample-every",
                        "1", "--sample-steps", "40"], training_home)
    wait_for(lambda: len(run.read_metrics()) >= 2, process, "second step")
    run.request_cancel()
    finish(process)
    status = run.read_status()
    assert status.state == RunState.CANCELLED
    step, _ = run.latest_checkpoint()
    assert step == status.step >= 2  # both processes stopped at the step the checkpoint holds
    assert [row["step"] for row in run.read_metrics()] == list(range(1, step + 1))

    run.clear_cancel()
    with caplog.at_level(logging.WARNING, logger="facestudio.training.train_fact"):
        status = run_training(TrainArgs(run, None), manager=manager)  # one process takes the whole global batch
    assert status.state == RunState.DONE
    assert "only by the order of float reductions" in caplog.text
    assert update_difference(tiny_studio.adapter, one, two / "adapter.safetensors") < RELATIVE_TOLERANCE


def test_each_sample_draws_from_its_global_position(train_config, tiny_dataset):
    from facestudio.training.data import TrainingData, sample_generator
    from facestudio.training.dataset import load_manifest

    data = TrainingData(load_manifest(tiny_dataset), 64)
    whole = data.batch([0, 1, 2], 1.0, [sample_generator(3, p) for p in (10, 11, 12)])
    parts = [data.batch([i], 1.0, [sample_generator(3, p)]) for i, p in ((0, 10), (1, 11), (2, 12))]
    assert whole.reference_indices == tuple(b.reference_indices[0] for b in parts)
    assert torch.equal(torch.rand(4, generator=sample_generator(3, 10)),
                       torch.rand(4, generator=sample_generator(3, 10)))
    assert not torch.equal(torch.rand(4, generator=sample_generator(3, 10)),
                           torch.rand(4, generator=sample_generator(3, 11)))
