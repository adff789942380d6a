"""The package installs: a wheel built from this checkout, installed into an empty folder and run from another one,
has the registry, the presets and their thumbnails, and the `facestudio` command with `studio`."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from facestudio.data import presets_dir
from facestudio.engine.registry import ModelRegistry
from tests.conftest import REPO_ROOT

#: What the build reads besides the package (pyproject.toml names README.md and requirements.txt).
BUILD_FILES = ("pyproject.toml", "README.md", "requirements.txt")
#: Run inside the installed package: where it was imported from and what it finds.
PROBE = """
import json, facestudio
from facestudio.data import assets_dir, presets_dir
from facestudio.engine.presets import load_presets
presets, problems = load_presets(presets_dir(), assets_dir())
print(json.dumps({"package": facestudio.__file__, "problems": problems,
                  "presets": {p.key: str(p.thumbnail) for p in presets}}))
"""


def pip(*args: str, cwd: Path) -> None:
    command = [sys.executable, "-m", "pip", *args, "--no-deps", "--disable-pip-version-check", "--quiet"]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="console scripts are .exe files in Scripts/ on Windows")
def test_the_built_wheel_runs_from_any_folder(tmp_path):
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(REPO_ROOT / "facestudio", source / "facestudio",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in BUILD_FILES:
        shutil.copy(REPO_ROOT / name, source / name)
    # Offline with the venv's setuptools (requirements-dev.txt installs it); in isolation pip would fetch it.
    offline = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    pip("wheel", ".", *offline, "-w", str(tmp_path / "dist"), cwd=source)
    (wheel,) = (tmp_path / "dist").glob("facestudio-*.whl")
    target = tmp_path / "installed"
    pip("install", "--no-index", "--target", str(target), str(wheel), cwd=tmp_path)

    (metadata,) = target.glob("facestudio-*.dist-info/METADATA")
    declared = [line.split(": ", 1)[1] for line in metadata.read_text().splitlines()
                if line.startswith("Requires-Dist: ")]
    assert "torch==2.13.0" in declared  # never an unpinned torch
    pins = [line for line in (REPO_ROOT / "requirements.txt").read_text().splitlines() if line and line[0] != "#"]
    assert len(declared) == len(pins)  # the same list as `pip install -r requirements.txt`

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The dependencies come from this venv (the script's interpreter); facestudio only from the installed folder.
    env = {**os.environ, "PYTHONPATH": str(target), "FACESTUDIO_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    script = str(target / "bin" / "facestudio")
    listed = {row["name"] for row in json.loads(run(script, "models", "--json"))["models"]}
    assert listed == set(ModelRegistry.default().records)  # models.json shipped
    usage = run(script, "studio", "--help")
    assert "--no-jobs" in usage and "FACESTUDIO_DEVICE" in usage

    probe = json.loads(run(sys.executable, "-c", PROBE))
    package = target / "facestudio"
    assert Path(probe["package"]).parent == package
    assert probe["problems"] == []
    assert set(probe["presets"]) == {path.stem for path in presets_dir().glob("*.json")}
    for key, thumbnail in probe["presets"].items():
        assert Path(thumbnail).is_relative_to(package / "data" / "assets"), key
        assert Path(thumbnail).is_file(), key
