"""Training fixtures (the tiny dataset and `train_config` live in tests/conftest.py: the job tests use them too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.conftest import tiny_request  # noqa: F401  (a generation request over the tiny models)


@pytest.fixture
def training_home(tmp_path, monkeypatch) -> Path:
    """An empty, offline FACESTUDIO_HOME for the entry points these tests start (the command line, the trainer)."""
    home = tmp_path / "home"
    monkeypatch.setenv("FACESTUDIO_HOME", str(home))
    monkeypatch.setenv("FACESTUDIO_OFFLINE", "1")
    return home


@pytest.fixture
def manager(training_home):
    """The model manager the trainer's entry point would build on that home, for training run in this process."""
    from facestudio.config import StudioSettings
    from facestudio.training.train_fact import model_manager

    return model_manager(StudioSettings(home=training_home, offline=True))


def train_argv(config) -> list[str]:
    """The `python -m facestudio train` flags that give `config` (for subprocess tests)."""
    return [
        config.dataset, "--base-model", config.base_model, "--init", config.init, "--face-encoder",
        config.face_encoder, "--steps", str(config.steps), "--batch-size", str(config.batch_size), "--resolution",
        str(config.resolution), "--lr", str(config.lr), "--warmup-steps", str(config.warmup_steps),
        "--checkpoint-every", str(config.checkpoint_every), "--keep-checkpoints", str(config.keep_checkpoints),
        "--sample-every", str(config.sample_every), "--sample-steps", str(config.sample_steps), "--seed",
        str(config.seed), "--cpu",
    ]
