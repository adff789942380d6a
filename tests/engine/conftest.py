"""Engine fixtures: tiny SD1.5-topology models on disk (built once per session), and an offline engine over them.

The engine runs its real loading code (diffusers folders, single files, safetensors adapters) and the real offline
face analysis (MediaPipe + dlib) on the shared photos; no test touches the network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.engine.tiny_models import TinyStudio


def make_manager(tiny: TinyStudio, home: Path, **overrides):
    from facestudio.engine import EngineSettings, ModelManager, select_device

    settings = EngineSettings(home=home, placement=select_device("cpu"), offline=True, face_backend="mediapipe",
                              embedder="dlib", single_file_config=str(tiny.base), **overrides)
    return ModelManager(settings)


@pytest.fixture(scope="session")
def engine(tiny_studio, tmp_path_factory):
    from facestudio.engine import Engine

    manager = make_manager(tiny_studio, tmp_path_factory.mktemp("home"))
    yield Engine(manager)
    manager.unload()


@pytest.fixture
def tiny_request(tiny_studio, faces_dir):
    """A small, fast text-to-image request over the tiny models (obama as the reference)."""
    from facestudio.engine import GenerateRequest, ModelChoice

    def make(**overrides):
        fields = {
            "faces": [str(faces_dir / "obama.jpg")],
            "prompt": "a portrait photo",
            "negative_prompt": "blurry",
            "seed": 7,
            "steps": 3,
            "width": 256,
            "height": 256,
            "models": ModelChoice(str(tiny_studio.base), str(tiny_studio.adapter), str(tiny_studio.face_encoder),
                                  str(tiny_studio.controlnet)),
        }
        fields.update(overrides)
        return GenerateRequest(**fields)

    return make


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def into_home(engine, path) -> str:
    """A copy of a test input inside the engine's home: a PNG names such files relative to the home (others by
    their name only, no folder of the machine), so `regenerate` finds them again."""
    import shutil

    source = Path(path)
    target = engine.manager.settings.home / "inputs" / source.parent.name / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copy(source, target)
    return str(target)
