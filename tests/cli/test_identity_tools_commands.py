"""`generate --best-of/--face-fix`, `inpaint --assign`, `fix-faces`: real subprocesses over the tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from facestudio.engine.identities import IDENTITY_FILE, IDENTITY_FORMAT
from tests.cli.test_engine_commands import model_flags, run_cli
from tests.engine.test_identity_tools import group_photo, small_references

# No model is given or cached: an option checked after loading would fail on the model instead of on itself.
NO_MODELS = ["--no-download", "--device", "cpu", "--backend", "mediapipe"]


@pytest.mark.parametrize(("args", "flag"), [
    (["generate", "--best-of", "0"], "--best-of"),
    (["generate", "--best-of", "2", "--keep", "3"], "--keep"),
    (["generate", "--best-of", "3", "--num-images", "2"], "--best-of"),
    (["generate", "--face-fix", "sometimes"], "--face-fix"),
    (["generate", "--face-fix-denoise", "1.5"], "--face-fix-denoise"),
    (["inpaint", "--image", "t.png", "--assign", "0=a.jpg", "--assign", "0=b.jpg"], "--assign"),
    (["inpaint", "--image", "t.png", "--assign", "zero=a.jpg"], "--assign"),
    (["fix-faces", "--image", "t.png", "--denoise", "0"], "--denoise"),
    (["compare", "--strengths", "0.5,3"], "--strengths"),
])
def test_out_of_range_options_are_one_sentence_before_any_model_loads(tmp_path, faces_dir, args, flag):
    face = ["--face", str(faces_dir / "obama.jpg")] if "--assign" not in args else []
    result = run_cli(tmp_path / "home", *args, *face, "--prompt", "a portrait", "--out", str(tmp_path / "out"),
                     *NO_MODELS)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def save_identity(home, name: str, photo) -> None:
    folder = home / "identities" / name.lower()
    folder.mkdir(parents=True)
    Image.open(photo).convert("RGB").save(folder / "photo-01.png")
    record = {"format": IDENTITY_FORMAT, "version": 1, "name": name, "photos": [{"file": "photo-01.png"}],
              "created": "", "subject": ""}
    (folder / IDENTITY_FILE).write_text(json.dumps(record))


def test_inpaint_assigns_people_and_fix_faces_reports_scores(tiny_studio, faces_dir, tmp_path):
    home = tmp_path / "home"  # the photos live in the studio's home, so the PNG names them and --from-png finds them
    home.mkdir()
    refs = small_references(home / "refs", faces_dir)
    template = home / "group.png"
    group_photo(faces_dir, (900, 500)).save(template)
    save_identity(home, "Barack", refs / "obama2.jpg")
    small = ["--steps", "2", "--width", "256", "--height", "256", "--seed", "5", *model_flags(tiny_studio)]
    made = run_cli(home, "inpaint", "--image", str(template), "--assign", "0=identity:Barack", "--assign",
                   f"2={refs / 'biden.jpg'}", "--denoise", "0.75", "--out", str(tmp_path / "out"), *small)
    assert made.returncode == 0, made.stderr
    line = made.stdout.strip().splitlines()[-1]
    assert "face 0 " in line and "face 2 " in line and "->" in line
    path = line.split()[0]
    record = json.loads(Image.open(path).text["facestudio"])
    assert [(a["face_index"], a["identity"]) for a in record["request"]["assignments"]] == [(0, "Barack"), (2, "")]
    assert record["request"]["recipe"] == "single"
    again = run_cli(home, "generate", "--from-png", path, "--out", str(tmp_path / "again"),
                    *model_flags(tiny_studio))  # the test models live outside the home: named again
    assert again.returncode == 0, again.stderr
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(again.stdout.split()[0])))
    fixed = run_cli(home, "fix-faces", "--image", str(template), "--face", str(refs / "obama2.jpg"),
                    "--face-index", "1", "--steps", "3", "--out", str(tmp_path / "fixed"), *small[2:])
    assert fixed.returncode == 0, fixed.stderr
    assert "face 1 " in fixed.stdout and "->" in fixed.stdout


def test_compare_writes_the_grid_the_plot_and_the_numbers(tiny_studio, faces_dir, tmp_path):
    from tests.engine.tiny_models import write_tiny_clip

    clip = write_tiny_clip(tmp_path / "clip")
    refs = small_references(tmp_path / "refs", faces_dir)
    out = tmp_path / "out"
    result = run_cli(tmp_path / "home", "compare", "--face", str(refs / "obama.jpg"), "--prompt", "a portrait",
                     "--strengths", "0,0.5,1", "--seed", "2", "--steps", "2", "--width", "256", "--height", "256",
                     "--clip-model", str(clip), "--out", str(out), *model_flags(tiny_studio))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split("strength ")[1].split()[0] for line in lines[:3]] == ["0", "0.5", "1"]
    assert all("CLIP " in line for line in lines[:3]) and lines[3].startswith("recommended strength:")
    numbers = json.loads(next(out.glob("*-compare.json")).read_text())
    assert [p["strength"] for p in numbers["points"]] == [0.0, 0.5, 1.0]
    assert all(0 <= p["clip_score"] <= 100 for p in numbers["points"]) and numbers["seed"] == 2
    assert Image.open(next(out.glob("*-grid.png"))).width == 3 * 256
    assert Image.open(next(out.glob("*-plot.png"))).size == (640, 480)
