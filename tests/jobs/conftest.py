"""Job tests: a temporary studio home, and runners that start the fake trainer (`fake_trainer.py`) instead of
the real one, so a job runs in a fraction of a second without torch."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from facestudio.jobs import JobRunner, JobStore
from facestudio.training.config import TrainConfig

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")
#: Generous: a step of the slow fake takes 0.2 s; only a broken runner makes a test wait this long.
WAIT_SECONDS = 15.0


def fake_command(run_root: Path) -> list[str]:
    return [sys.executable, str(FAKE_TRAINER), "--resume", str(run_root)]


def fake_config(mode: str = "ok", steps: int = 6, checkpoint_every: int = 3) -> TrainConfig:
    return TrainConfig(dataset=f"fake:{mode}", steps=steps, checkpoint_every=checkpoint_every)


def wait_for(predicate: Callable[[], object], timeout: float = WAIT_SECONDS, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def store(home) -> JobStore:
    return JobStore(home)


@pytest.fixture
def make_runner(store):
    """Runners over `store` with the fake trainer; any left running are stopped after the test."""
    made: list[JobRunner] = []

    def make(**kwargs) -> JobRunner:
        kwargs.setdefault("command_for", fake_command)
        kwargs.setdefault("poll_seconds", 0.02)
        runner = JobRunner(kwargs.pop("store", store), **kwargs)
        made.append(runner)
        return runner

    yield make
    for runner in made:
        if runner.running:
            runner.stop(cancel_running=True, timeout_seconds=5)
