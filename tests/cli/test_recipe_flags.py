"""`--recipe`, `--pose-controlnet` (alias `--controlnet`) and `--canny-controlnet` on the command line."""

from __future__ import annotations

from facestudio.cli.main import build_parser
from tests.cli.test_engine_commands import model_flags, run_cli


def test_recipe_and_controlnet_flags_parse_with_their_defaults():
    parser = build_parser()
    inpaint = parser.parse_args(["inpaint", "--image", "t.jpg", "--out", "o", "--controlnet", "pose-dir",
                                 "--canny-controlnet", "canny-dir"])
    assert (inpaint.recipe, inpaint.controlnet, inpaint.canny_controlnet) == ("release", "pose-dir", "canny-dir")
    generate = parser.parse_args(["generate", "--out", "o", "--pose-controlnet", "p", "--subject", "a man"])
    assert (generate.recipe, generate.controlnet, generate.subject) == ("single", "p", "a man")


def test_unknown_recipe_and_missing_canny_controlnet_are_one_sentence(tiny_studio, faces_dir, tmp_path):
    face = str(faces_dir / "obama.jpg")
    bad = run_cli(tmp_path / "home", "generate", "--face", face, "--prompt", "x", "--recipe", "best",
                  "--out", str(tmp_path), *model_flags(tiny_studio))
    assert bad.returncode == 1 and "--recipe must be one of release, single; got 'best'" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = run_cli(tmp_path / "home", "inpaint", "--image", str(faces_dir / "astronaut.png"), "--face", face,
                      "--steps", "2", "--width", "256", "--height", "256", "--out", str(tmp_path / "out"),
                      "--pose-controlnet", str(tiny_studio.controlnet), *model_flags(tiny_studio))
    assert missing.returncode == 1 and "python -m facestudio download canny" in missing.stderr, missing.stderr
    assert "Traceback" not in missing.stderr
