"""FAIR training on tiny random models (CPU): the loss goes down, FAIR keeps the adapter off the background, a run
killed with SIGKILL resumes to the same weights, cancel leaves a checkpoint, and the result loads for generation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from facestudio.errors import TrainingError
from facestudio.training import RunFolder, RunState, TrainConfig, create_run
from facestudio.training.checkpoint import load_checkpoint
from facestudio.training.train_fact import FACTTrainer, TrainArgs, run_training
from tests.conftest import REPO_ROOT
from tests.training.conftest import train_argv


def make_trainer(run_root: Path, config: TrainConfig, manager) -> FACTTrainer:
    run = create_run(run_root, config, state=RunState.RUNNING)
    trainer = FACTTrainer(run, config, manager=manager)
    trainer.setup()
    return trainer


def run_cli(args: list[str], home: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "FACESTUDIO_HOME": str(home), "FACESTUDIO_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-m", "facestudio", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def max_difference(first: Path, second: Path) -> float:
    a, b = load_file(first), load_file(second)
    assert set(a) == set(b)
    return max(float((a[name] - b[name]).abs().max()) for name in a)


def test_a_few_steps_lower_the_loss(tmp_path, train_config, manager):
    trainer = make_trainer(tmp_path / "run", train_config(steps=20, lr=3e-3, fair_weight=0.0, drop_prob=0.0,
                                                          shuffle_prob=0.0), manager)
    try:
        before, _ = trainer.evaluate(seed=0)
        while trainer.step < 20:
            trainer.train_step()
        after, _ = trainer.evaluate(seed=0)
    finally:
        trainer.close()
    assert after < 0.9 * before, (before, after)


def test_fair_lowers_the_off_face_increment(tmp_path, train_config, manager):
    """Same seed, data and steps; the only difference is FAIR's weight."""
    ratios = {}
    for weight in (0.0, 1.0):
        trainer = make_trainer(tmp_path / f"fair-{weight}", train_config(steps=10, fair_weight=weight), manager)
        try:
            _, initial = trainer.evaluate(seed=0)
            while trainer.step < 10:
                trainer.train_step()
            _, ratios[weight] = trainer.evaluate(seed=0)
        finally:
            trainer.close()
    assert ratios[1.0] < 0.8 * ratios[0.0], ratios
    assert ratios[1.0] < initial


def test_kill_after_a_checkpoint_then_resume_equals_an_uninterrupted_run(tmp_path, train_config):
    config = train_config(steps=8, checkpoint_every=2, keep_checkpoints=2, sample_every=3)
    home = tmp_path / "home"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    uninterrupted = run_cli(["train", *train_argv(config), "--out", str(straight)], home)
    victim = run_cli(["train", *train_argv(config), "--out", str(killed)], home)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "step-2" / "state.json").exists():
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert json.loads((killed / "status.json").read_text())["state"] == RunState.RUNNING  # nobody could say otherwise
    assert not (killed / "adapter.safetensors").exists()

    _, err = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, err
    resumed = run_cli(["train", "--resume", str(killed)], home)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err

    assert max_difference(straight / "adapter.safetensors", killed / "adapter.safetensors") < 1e-6
    steps = [row["step"] for row in RunFolder(killed).read_metrics()]
    assert steps == list(range(1, 9))  # repeated steps replaced, none lost
    assert [row["loss"] for row in RunFolder(killed).read_metrics()] == pytest.approx(
        [row["loss"] for row in RunFolder(straight).read_metrics()], rel=1e-5)
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["step-6", "step-8"]
    assert json.loads((killed / "status.json").read_text())["state"] == RunState.DONE
    assert sorted(p.name for p in (killed / "samples").iterdir()) == sorted(
        p.name for p in (straight / "samples").iterdir())


def test_cancel_leaves_a_loadable_checkpoint_and_resume_finishes(tmp_path, train_config, manager):
    from facestudio.fact import FACTAdapter
    from facestudio.training.train_fact import load_models

    config = train_config(steps=6, checkpoint_every=4)
    run = create_run(tmp_path / "run", config, state=RunState.RUNNING)
    seen = []

    def on_progress(status):
        seen.append(status.state)
        if status.step == 3:
            run.request_cancel()  # what `jobs cancel` and the UI do, from any process

    status = run_training(TrainArgs(run, None), on_progress=on_progress, manager=manager)
    assert status.state == RunState.CANCELLED and status.step == 3
    assert RunState.CANCELLING in seen
    assert run.read_status().state == RunState.CANCELLED
    assert not run.adapter_path.exists()
    step, path = run.latest_checkpoint()
    assert step == 3
    state, adapter_state, _, _ = load_checkpoint(path)
    assert state.step == 3 and state.samples_seen == 3 * config.batch_size
    models = load_models(config, torch.device("cpu"), torch.float32, manager)
    models.adapter.remove()
    adapter = FACTAdapter.from_checkpoint(path / "adapter.safetensors", models.unet)  # the released layout
    assert set(adapter.state_dict()) == set(adapter_state)

    run.clear_cancel()
    status = run_training(TrainArgs(run, None), manager=manager)
    assert status.state == RunState.DONE and status.step == 6
    assert run.adapter_path.is_file()


def test_trained_adapter_loads_into_generation(tmp_path, train_config, tiny_request, tiny_studio, manager):
    from facestudio.engine import Engine, ModelChoice
    from tests.engine.conftest import make_manager

    config = train_config(steps=2, checkpoint_every=2, sample_every=2)
    status = run_training(TrainArgs(RunFolder(tmp_path / "run"), config), manager=manager)
    run = RunFolder(tmp_path / "run")
    assert status.state == RunState.DONE
    assert [p.name for p in run.samples()] == ["step-000002_seed-0.png", "step-000002_seed-1.png"]
    tiny = tiny_request()
    engine = Engine(make_manager(tiny_studio, tmp_path / "engine-home"))
    models = ModelChoice(config.base_model, str(run.adapter_path), config.face_encoder, tiny.models.controlnet)
    request = tiny_request(models=models)
    trained = engine.generate(request)
    released = engine.generate(tiny_request())
    assert trained.images[0].image.size == (256, 256)
    assert trained.images[0].record.models["fact_adapter"]["path"] == str(run.adapter_path)
    assert trained.images[0].image.tobytes() != released.images[0].image.tobytes()


def test_a_crash_marks_the_run_failed_and_never_done(tmp_path, train_config, tiny_dataset, training_home):
    import shutil

    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, dataset)
    first_image = next((dataset / "images").rglob("*.png"))
    first_image.write_bytes(b"not a png any more")
    run_root = tmp_path / "run"
    process = run_cli(["train", *train_argv(train_config(dataset=str(dataset), steps=4)), "--out", str(run_root)],
                      Path(os.environ["FACESTUDIO_HOME"]))
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "Traceback" not in err
    status = RunFolder(run_root).read_status()
    assert status.state == RunState.FAILED
    assert first_image.name in status.error
    assert not (run_root / "adapter.safetensors").exists()


def test_flags_are_checked_before_anything_loads(tmp_path, train_config, training_home):
    from facestudio.cli import build_parser

    config = train_config()
    run_root = tmp_path / "run"
    create_run(run_root, config)
    cases = [
        (["train", "--resume", str(run_root), "--lr", "0.1"], "--resume continues a run with its own settings"),
        (["train", *train_argv(config), "--out", str(run_root)], "already holds a training run"),
        (["train", config.dataset, "--out", str(tmp_path / "new"), "--steps", "0"], "`steps` must be"),
        (["train", config.dataset, "--out", str(tmp_path / "new"), "--resolution", "100"], "`resolution` must be"),
        (["train", "--resume", str(tmp_path / "nothing")], "is not a training run"),
    ]
    for argv, expected in cases:
        args = build_parser().parse_args(argv)
        with pytest.raises(TrainingError, match=expected):
            args.handler(args)
    assert not (tmp_path / "new").exists()
    # The command line turns them into one sentence and exit code 1.
    process = run_cli(cases[0][0], Path(os.environ["FACESTUDIO_HOME"]))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err.strip().splitlines() == ["error: --resume continues a run with its own settings; drop --lr."]
    # A field named in the library's message is worded as the flag that sets it.
    process = run_cli(cases[2][0], Path(os.environ["FACESTUDIO_HOME"]))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err.strip().startswith("error: --steps must be"), err


def test_config_round_trips_and_refuses_unknown_settings(train_config):
    config = train_config(sample_seeds=(4, 5))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(TrainingError, match="does not know: bogus"):
        TrainConfig.from_dict({**config.to_dict(), "bogus": 1})


def test_curriculum_ramps_the_shuffle_probability(train_config):
    config = train_config(steps=100, shuffle_prob=0.6, curriculum_start=0.2, curriculum_end=0.5)
    assert [config.shuffle_probability(s) for s in (0, 19, 20, 35, 50, 99)] == pytest.approx(
        [0, 0, 0, 0.3, 0.6, 0.6])
    assert config.replace(curriculum=False).shuffle_probability(0) == 0.6


def test_the_device_is_a_setting_and_cpu_stays_its_alias(train_config):
    from facestudio.cli import build_parser
    from facestudio.training.arguments import config_from_namespace
    from facestudio.training.train_fact import claim_device

    def parsed(*flags: str) -> TrainConfig:
        return config_from_namespace(build_parser().parse_args(["train", "DATASET", "--out", "RUN", *flags]))

    assert [parsed(*flags).device for flags in ((), ("--cpu",), ("--device", "cuda:1"))] == ["auto", "cpu", "cuda:1"]
    for bad in ("gpu", "cuda:", "cuda:x", "CPU"):
        with pytest.raises(TrainingError, match=f"`device` must be auto, cpu, mps, cuda or cuda:N; got '{bad}'"):
            parsed("--device", bad)
    legacy = {key: value for key, value in train_config().to_dict().items() if key != "device"}
    assert TrainConfig.from_dict({**legacy, "cpu": True}).device == "cpu"  # a run written before `device`
    assert TrainConfig.from_dict({**legacy, "cpu": False}).device == "auto"
    assert claim_device(train_config(device="cpu")) is True
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU (cuda:0 on a machine without any)
    with pytest.raises(TrainingError, match="needs a CUDA GPU" if not torch.cuda.is_available() else "this machine has"):
        claim_device(train_config(device=missing))
