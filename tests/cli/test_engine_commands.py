"""`python -m facestudio generate|inpaint|download|models`: real subprocesses over the tiny models, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.conftest import REPO_ROOT
from tests.face.images import noise


def run_cli(home, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACESTUDIO_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "facestudio", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300, env=env)


def model_flags(tiny) -> list[str]:
    return ["--base-model", str(tiny.base), "--adapter", str(tiny.adapter), "--face-encoder", str(tiny.face_encoder),
            "--backend", "mediapipe", "--device", "cpu"]


def test_generate_writes_pngs_and_from_png_makes_the_same_image(tiny_studio, faces_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli(tmp_path / "home", "generate", "--face", str(faces_dir / "obama.jpg"), "--prompt", "a portrait",
                     "--seed", "3", "--steps", "2", "--width", "256", "--height", "256", "--num-images", "2",
                     "--scheduler", "DDIM", "--out", str(out), *model_flags(tiny_studio))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and "seed 3" in lines[0] and "seed 4" in lines[1]
    first = lines[0].split()[0]
    record = Image.open(first).text["facestudio"]
    assert str(tmp_path) not in record and str(faces_dir) not in record and str(tiny_studio.root) not in record
    # The photo and the models lie outside FACESTUDIO_HOME, so the PNG names them only: they are given again.
    missing = run_cli(tmp_path / "home", "generate", "--from-png", first, "--out", str(tmp_path / "again"),
                      "--backend", "mediapipe", "--device", "cpu")
    assert missing.returncode == 1 and "obama.jpg (used to make" in missing.stderr, missing.stderr
    again = run_cli(tmp_path / "home", "generate", "--from-png", first, "--out", str(tmp_path / "again"),
                    "--face", str(faces_dir / "obama.jpg"), *model_flags(tiny_studio))
    assert again.returncode == 0, again.stderr
    remade = again.stdout.split()[0]
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(remade)))


def test_reference_without_a_face_exits_1_with_one_sentence(tiny_studio, tmp_path):
    wall = tmp_path / "wall.png"
    noise((300, 200)).save(wall)
    result = run_cli(tmp_path / "home", "generate", "--face", str(wall), "--prompt", "x", "--out", str(tmp_path),
                     *model_flags(tiny_studio))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: No face found in wall.png")
    assert "Traceback" not in result.stderr


def test_bad_size_and_missing_model_are_user_errors(tiny_studio, faces_dir, tmp_path):
    face = str(faces_dir / "obama.jpg")
    bad = run_cli(tmp_path / "home", "generate", "--face", face, "--prompt", "x", "--width", "500",
                  "--out", str(tmp_path), *model_flags(tiny_studio))
    assert bad.returncode == 1 and "multiple of 8" in bad.stderr and "Traceback" not in bad.stderr
    offline = run_cli(tmp_path / "home", "generate", "--face", face, "--prompt", "x", "--out", str(tmp_path),
                      "--backend", "mediapipe", "--device", "cpu")
    assert offline.returncode == 1
    assert "python -m facestudio download majicmix" in offline.stderr and "Traceback" not in offline.stderr


def test_inpaint_keeps_the_template_size(tiny_studio, faces_dir, tmp_path):
    template = faces_dir / "astronaut.png"
    result = run_cli(tmp_path / "home", "inpaint", "--image", str(template), "--face", str(faces_dir / "obama.jpg"),
                     "--mask", "head", "--recipe", "single", "--seed", "1", "--steps", "2", "--width", "256", "--height", "256",
                     "--out", str(tmp_path / "out"), *model_flags(tiny_studio))
    assert result.returncode == 0, result.stderr
    made = Image.open(result.stdout.split()[0])
    assert made.size == Image.open(template).size


def test_models_lists_the_registry_with_cache_state(tmp_path):
    result = run_cli(tmp_path / "home", "models", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    names = {row["name"]: row for row in listing["models"]}
    assert {"majicmix", "film", "fact-majicmix", "fact-film", "transface-s", "openpose"} <= set(names)
    assert names["majicmix"]["default"] and not names["majicmix"]["cached"] and names["film"]["size_bytes"] > 1e9
    download = run_cli(tmp_path / "home", "download", "fact-film", "--yes")
    assert download.returncode == 1
    assert "about 1.0 GB" in download.stdout and "downloads are off" in download.stderr
