"""The flags every front that drives the engine declares: device, precision, memory, attention, downloads and the
face detector. Declared once, here, so `generate`/`inpaint` and the studio (`facestudio studio`, `python app.py`)
cannot drift apart; the studio also reads each one from its FACESTUDIO_* variable (a flag wins).

Imports nothing heavy: building a parser must stay instant (`--help`, and the studio's page within seconds).
"""

from __future__ import annotations

import argparse
import os

from facestudio.config import parse_flag

DTYPES = ("auto", "fp16", "bf16", "fp32")
ATTENTION_KERNELS = ("auto", "sdpa", "xformers", "sliced")
FACE_BACKENDS = ("auto", "mediapipe", "insightface")


def env_flag(name: str) -> bool:
    """Whether the environment variable `name` says yes; `SettingsError` for a word that is neither yes nor no."""
    return parse_flag(name, os.environ.get(name))


def _default(env_defaults: bool, variable: str, default: str) -> str:
    return os.environ.get(variable, default) if env_defaults else default


def _named(help_text: str, env_defaults: bool, variable: str) -> str:
    """The help text, naming the variable when the front reads one."""
    return f"{help_text} ({variable})" if env_defaults else help_text


def add_device_options(parser: argparse.ArgumentParser, env_defaults: bool = False) -> None:
    """--device, --dtype, --low-vram, --attention and --no-download; with `env_defaults`, each defaults to its
    FACESTUDIO_* variable."""
    parser.add_argument("--device", default=_default(env_defaults, "FACESTUDIO_DEVICE", "auto"), metavar="NAME",
                        help=_named("auto (CUDA, then Apple MPS, then CPU), cuda, cuda:1, mps or cpu", env_defaults,
                                    "FACESTUDIO_DEVICE"))
    parser.add_argument("--dtype", default=_default(env_defaults, "FACESTUDIO_DTYPE", "auto"), choices=DTYPES,
                        help=_named("precision (default: fp16 on a GPU, fp32 on the CPU)", env_defaults,
                                    "FACESTUDIO_DTYPE"))
    parser.add_argument("--low-vram", action="store_true",
                        default=env_flag("FACESTUDIO_LOW_VRAM") if env_defaults else False,
                        help=_named("keep idle models in RAM (model CPU offload) and decode in tiles: for GPUs under "
                                    "6 GB", env_defaults, "FACESTUDIO_LOW_VRAM=1"))
    parser.add_argument("--attention", default=_default(env_defaults, "FACESTUDIO_ATTENTION", "auto"),
                        choices=ATTENTION_KERNELS,
                        help=_named("attention kernels (default: PyTorch SDPA)", env_defaults,
                                    "FACESTUDIO_ATTENTION"))
    parser.add_argument("--no-download", action="store_true",
                        default=env_flag("FACESTUDIO_NO_DOWNLOAD") if env_defaults else False,
                        help=_named("never download; use only the cache (a missing model is an error naming it)",
                                    env_defaults, "FACESTUDIO_NO_DOWNLOAD=1"))


def add_face_backend_option(parser: argparse.ArgumentParser, env_defaults: bool = False) -> None:
    """--backend, the face detector; with `env_defaults`, it defaults to FACESTUDIO_FACE_BACKEND."""
    parser.add_argument("--backend", default=_default(env_defaults, "FACESTUDIO_FACE_BACKEND", "auto"),
                        choices=FACE_BACKENDS,
                        help=_named("face detector: insightface (needs its model pack on disk), mediapipe (offline, "
                                    "bundled) or auto (insightface when present); default auto", env_defaults,
                                    "FACESTUDIO_FACE_BACKEND"))
