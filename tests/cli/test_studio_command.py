"""`facestudio studio`: the same flags, defaults and studio as `python app.py`; the device flags declared once."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import app
from facestudio.cli import EXIT_OK, build_parser, main

#: Every FACESTUDIO_* variable the studio reads for a flag, with a value that differs from the default.
STUDIO_VARIABLES = {
    "FACESTUDIO_HOST": "0.0.0.0", "FACESTUDIO_PORT": "9001", "FACESTUDIO_SHARE": "1", "FACESTUDIO_AUTH": "u:p",
    "FACESTUDIO_DEVICE": "cpu", "FACESTUDIO_DTYPE": "fp32", "FACESTUDIO_LOW_VRAM": "yes",
    "FACESTUDIO_ATTENTION": "sliced", "FACESTUDIO_BASE_MODEL": "film", "FACESTUDIO_ADAPTER": "fact-film",
    "FACESTUDIO_FACE_ENCODER": "/x/enc.pt", "FACESTUDIO_FACE_BACKEND": "mediapipe", "FACESTUDIO_NO_DOWNLOAD": "true",
    "FACESTUDIO_NO_JOBS": "on",
}


def studio_options(argv: list[str]) -> dict:
    options = vars(build_parser().parse_args(["studio", *argv]))
    return {key: value for key, value in options.items() if key not in ("command", "handler", "settings")}


@pytest.mark.parametrize("env", [{}, STUDIO_VARIABLES], ids=["defaults", "variables"])
def test_studio_takes_every_app_flag_with_the_same_defaults(monkeypatch, env):
    for name in STUDIO_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert studio_options([]) == vars(app.parse_args([]))
    flags = ["--port", "7001", "--device", "cuda:1", "--no-jobs", "--attention", "sdpa"]
    assert studio_options(flags) == vars(app.parse_args(flags))
    if env:
        options = studio_options([])
        assert (options["port"], options["device"], options["low_vram"], options["no_download"]) == (9001, "cpu", True,
                                                                                                   True)


def test_generate_declares_the_same_device_flags_without_reading_the_variables(monkeypatch):
    monkeypatch.setenv("FACESTUDIO_DEVICE", "cpu")
    flags = ["--device", "cuda:1", "--dtype", "bf16", "--low-vram", "--attention", "xformers", "--no-download",
             "--backend", "insightface"]
    device = ("device", "dtype", "low_vram", "attention", "no_download", "backend")
    parser = build_parser()
    generate = parser.parse_args(["generate", "--out", "o", *flags])
    inpaint = parser.parse_args(["inpaint", "--image", "t.jpg", "--out", "o", *flags])
    studio = parser.parse_args(["studio", *flags])
    assert [getattr(generate, k) for k in device] == [getattr(inpaint, k) for k in device] == \
        [getattr(studio, k) for k in device] == ["cuda:1", "bf16", True, "xformers", True, "insightface"]
    assert parser.parse_args(["generate", "--out", "o"]).device == "auto"  # the studio's variables are its own


@pytest.mark.parametrize("argv", [["--debug", "studio"], ["studio", "--debug"]])
def test_studio_serves_the_parsed_options(monkeypatch, argv):
    served = []
    monkeypatch.setattr("facestudio.ui.launch.serve", lambda args, settings: served.append((args, settings)))
    level = logging.getLogger().level
    try:
        assert main([*argv, "--port", "7123", "--no-jobs"]) == EXIT_OK
    finally:
        logging.getLogger().setLevel(level)  # the command sets the studio's level
    assert len(served) == 1
    args, settings = served[0]
    assert args.port == 7123 and args.no_jobs and args.debug and settings is args.settings


def test_building_the_parser_imports_neither_torch_nor_gradio():
    """`facestudio --help` and `facestudio studio --help` are instant."""
    code = ("import sys; from facestudio.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'gradio', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
