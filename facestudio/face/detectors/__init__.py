"""Face detector backends and the choice between them.

`insightface` (SCRFD) is used when its model pack is on disk; otherwise `mediapipe`, whose models ship inside the
wheel, so the studio works offline from the first start. Which one ran is always reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from facestudio.config import DEFAULT_INSIGHTFACE_ROOT
from facestudio.errors import BackendUnavailableError
from facestudio.face.types import Face

BACKENDS = ("auto", "mediapipe", "insightface")


class FaceDetector(Protocol):
    name: str

    def detect(self, pixels: np.ndarray) -> list[Face]: ...

    def close(self) -> None: ...


def resolve_backend(backend: str = "auto", insightface_root: Path = DEFAULT_INSIGHTFACE_ROOT) -> str:
    """The concrete backend `backend` stands for on this machine (insightface when its pack is under
    `insightface_root`)."""
    from facestudio.face.detectors.insightface_backend import is_insightface_available

    if backend not in BACKENDS:
        raise BackendUnavailableError(f"Unknown face backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if backend == "auto":
        return "insightface" if is_insightface_available(insightface_root) else "mediapipe"
    return backend


def create_detector(backend: str = "auto", insightface_root: Path = DEFAULT_INSIGHTFACE_ROOT,
                    **options) -> FaceDetector:
    name = resolve_backend(backend, insightface_root)
    if name == "insightface":
        from facestudio.face.detectors.insightface_backend import InsightFaceDetector

        return InsightFaceDetector(root=insightface_root,
                                   **{k: v for k, v in options.items() if k in ("score_threshold",)})
    from facestudio.face.detectors.mediapipe_backend import MediaPipeFaceDetector

    return MediaPipeFaceDetector(**options)
