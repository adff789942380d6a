"""Shared fixtures: where the real test photos live, and one offline face analyzer per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """`../shared` beside the checkout (as CI lays it out), or FACESTUDIO_SHARED."""
    return Path(os.environ.get("FACESTUDIO_SHARED", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    folder = shared_dir() / "faces"
    if not (folder / "obama.jpg").exists():
        pytest.skip(f"the shared test photos are not at {folder} (set FACESTUDIO_SHARED)")
    return folder


@pytest.fixture(scope="session")
def analyzer():
    from facestudio.face import FaceAnalyzer

    analyzer = FaceAnalyzer(backend="mediapipe", embedder="dlib")
    yield analyzer
    analyzer.close()


@pytest.fixture(scope="session")
def tiny_studio(tmp_path_factory):
    """Tiny random SD1.5-topology models on disk (see `tests.engine.tiny_models`), built once per session."""
    from tests.engine.tiny_models import build_tiny_studio

    return build_tiny_studio(tmp_path_factory.mktemp("tiny-studio"))


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
            "device": "cpu", "seed": 3,
        }
        settings.update(overrides)
        return TrainConfig(**settings)

    return make
