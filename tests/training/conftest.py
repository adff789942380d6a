"""Training fixtures: a tiny prepared dataset from the shared photos (two of one person, one of another) and a
`TrainConfig` over the tiny random models, small enough that a step takes a fraction of a second on a CPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.engine.conftest import tiny_request  # noqa: F401  (a generation request over the tiny models)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, faces_dir, analyzer) -> Path:
    from facestudio.training import PrepareSettings, prepare_dataset

    photos = tmp_path_factory.mktemp("train-photos")
    (photos / "obama").mkdir()
    (photos / "biden").mkdir()
    shutil.copy(faces_dir / "obama.jpg", photos / "obama")
    shutil.copy(faces_dir / "obama2.jpg", photos / "obama")
    shutil.copy(faces_dir / "biden.jpg", photos / "biden")
    out = tmp_path_factory.mktemp("train-dataset") / "dataset"
    report = prepare_dataset(photos, out, analyzer, PrepareSettings(size=128))
    assert len(report.kept) == 3
    return out


@pytest.fixture
def train_config(tiny_studio, tiny_dataset):
    """A `TrainConfig` over the tiny models; keyword arguments override settings."""
    from facestudio.training import TrainConfig

    def make(**overrides):
        settings = {
            "dataset": str(tiny_dataset), "base_model": str(tiny_studio.base), "init": str(tiny_studio.adapter),
            "face_encoder": str(tiny_studio.face_encoder), "steps": 6, "batch_size": 2, "resolution": 64,
            "lr": 1e-3, "warmup_steps": 0, "checkpoint_every": 2, "sample_every": 0, "sample_steps": 2,
            "cpu": True, "seed": 3,
        }
        settings.update(overrides)
        return TrainConfig(**settings)

    return make


@pytest.fixture
def studio_home(tmp_path, monkeypatch) -> Path:
    """An empty, offline FACESTUDIO_HOME for code that builds its own model manager."""
    home = tmp_path / "home"
    monkeypatch.setenv("FACESTUDIO_HOME", str(home))
    monkeypatch.setenv("FACESTUDIO_OFFLINE", "1")
    return home


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
