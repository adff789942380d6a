"""The trainer process imports the same `facestudio` as the runner, from any working folder, installed or not."""

from __future__ import annotations

import os
import subprocess
import sys

import facestudio
from facestudio.jobs.runner import trainer_pythonpath
from tests.conftest import REPO_ROOT


def test_a_checkout_is_put_on_the_path_and_the_trainer_finds_it_from_elsewhere(tmp_path):
    path = trainer_pythonpath()
    assert path == str(REPO_ROOT.resolve()) == str(os.path.dirname(os.path.dirname(facestudio.__file__)))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = path
    out = subprocess.run([sys.executable, "-c", "import facestudio; print(facestudio.__file__)"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == facestudio.__file__


def test_an_installed_package_adds_nothing(monkeypatch):
    package_parent = REPO_ROOT.resolve()
    monkeypatch.setattr("site.getsitepackages", lambda: ["/usr/lib/python3/dist-packages", str(package_parent)])
    assert trainer_pythonpath() is None
