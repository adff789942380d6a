"""Apparent gender and age of a face, for the release's subject words ("a beautiful woman, 25-year-old, ").

The release reads them with an attribute model before every prompt (FACT.md §1). The studio uses insightface's
`genderage` model when its pack is on disk (never downloaded); without it there is no estimate and the user types
the words. The estimate only fills a field the user sees and can change: nothing else depends on it.
"""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from facestudio.face.types import Face

_GENDERAGE_PREFIX = "genderage"


@dataclass(frozen=True)
class Attributes:
    woman: bool
    age: int


class AttributeEstimator(Protocol):
    def estimate(self, pixels: np.ndarray, face: Face) -> Attributes: ...


class InsightFaceGenderAge:
    """insightface's gender/age model (`genderage.onnx` of buffalo_l/antelopev2) on an RGB photo."""

    def __init__(self, model_path: Path):
        from facestudio.face.detectors.insightface_backend import load_insightface_model

        self._model = load_insightface_model(model_path)
        self._lock = threading.Lock()

    def estimate(self, pixels: np.ndarray, face: Face) -> Attributes:
        from insightface.app.common import Face as InsightFace

        target = InsightFace(bbox=np.asarray(face.bbox, dtype=np.float32))
        with self._lock:
            gender, age = self._model.get(np.ascontiguousarray(pixels[:, :, ::-1]), target)
        return Attributes(woman=int(gender) == 0, age=int(age))  # insightface: 1 = male, 0 = female


def find_genderage_model(root: Path) -> Path | None:
    """The gender/age ONNX file of the first insightface pack under `root/models`, or `None`."""
    from facestudio.face.detectors.insightface_backend import PACK_NAMES

    for name in PACK_NAMES:
        folder = Path(root).expanduser() / "models" / name
        if folder.is_dir():
            found = sorted(f for f in folder.glob("*.onnx") if f.name.lower().startswith(_GENDERAGE_PREFIX))
            if found:
                return found[0]
    return None


def create_attribute_estimator(root: Path) -> AttributeEstimator | None:
    """insightface's estimator when its package and a pack with the model are present; otherwise `None`."""
    from facestudio.errors import BackendUnavailableError

    path = find_genderage_model(root)
    if path is None:
        return None
    try:
        return InsightFaceGenderAge(path)
    except (BackendUnavailableError, ImportError, OSError, RuntimeError):
        return None


def subject_words(estimates: list[Attributes]) -> str:
    """The release's words for the person over several photos: the majority gender and the median age
    (`a beautiful woman, 25-year-old` / `a handsome man, 40-year-old`); empty without estimates."""
    if not estimates:
        return ""
    woman = sum(e.woman for e in estimates) * 2 >= len(estimates)
    age = round(float(statistics.median(e.age for e in estimates)))
    return f"{'a beautiful woman' if woman else 'a handsome man'}, {max(1, age)}-year-old"
