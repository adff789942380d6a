"""`python -m facestudio analyze|similarity`: the JSON contract, exit codes, and errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facestudio", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=180)


def test_analyze_json_reports_each_input_and_fails_after_reporting_all(faces_dir, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    obama, astronaut = str(faces_dir / "obama.jpg"), str(faces_dir / "astronaut.png")
    result = run_cli("analyze", obama, str(broken), astronaut, "--json", "--backend", "mediapipe",
                     "--save-debug", str(tmp_path / "debug"))
    assert result.returncode == 1
    reports = json.loads(result.stdout)
    assert [r["image"] for r in reports] == [obama, str(broken), astronaut]
    first, bad, last = reports
    assert (first["width"], first["height"], first["backend"], first["error"]) == (910, 1137, "mediapipe", None)
    assert len(first["faces"]) == 1 and set(first["faces"][0]) == {"bbox", "score", "kps"}
    assert len(first["faces"][0]["kps"]) == 5 and len(first["faces"][0]["bbox"]) == 4
    assert bad["faces"] == [] and "broken.jpg" in bad["error"]
    assert len(last["faces"]) == 1
    assert "Traceback" not in result.stderr
    assert (tmp_path / "debug" / "obama.faces.png").stat().st_size > 1000


def test_analyze_table_and_no_face_is_not_an_error(tmp_path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 200), (40, 90, 160)).save(blank)
    result = run_cli("analyze", str(blank))
    assert result.returncode == 0, result.stderr
    assert "300x200, 0 face(s)" in result.stdout


def test_similarity_json_and_missing_face_error(faces_dir, tmp_path):
    result = run_cli("similarity", str(faces_dir / "obama.jpg"), str(faces_dir / "obama2.jpg"), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["same_person"] is True and payload["model"] in ("dlib-resnet-v1", "arcface")
    assert -1 <= payload["similarity"] <= 1

    from PIL import Image

    blank = tmp_path / "wall.png"
    Image.new("RGB", (300, 200), (200, 200, 200)).save(blank)
    result = run_cli("similarity", str(faces_dir / "obama.jpg"), str(blank))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: No face found in {blank}; use a clear photo with the face visible."


@pytest.mark.parametrize("args", [["analyze"], ["similarity", "a.jpg"], ["nonsense"]])
def test_usage_errors_exit_2(args):
    assert run_cli(*args).returncode == 2
