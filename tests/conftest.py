"""Shared fixtures: where the real test photos live, and one offline face analyzer per test session."""

from __future__ import annotations

import os
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

    analyzer = FaceAnalyzer(backend="mediapipe", identity="dlib")
    yield analyzer
    analyzer.close()


@pytest.fixture(scope="session")
def tiny_studio(tmp_path_factory):
    """Tiny random SD1.5-topology models on disk (see `tests.engine.tiny_models`), built once per session."""
    from tests.engine.tiny_models import build_tiny_studio

    return build_tiny_studio(tmp_path_factory.mktemp("tiny-studio"))
