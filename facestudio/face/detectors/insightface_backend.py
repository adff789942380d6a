"""insightface's SCRFD detector and ArcFace recogniser, used only when their model pack is already on disk.

insightface downloads its packs (buffalo_l, antelopev2) at run time; the studio never triggers that. It looks
for a pack in `<root>/models/<pack>/`, where the root is given by the caller (`StudioSettings.insightface_root`,
i.e. FACESTUDIO_INSIGHTFACE_ROOT, default `~/.insightface`), and otherwise the offline MediaPipe backend is used.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facestudio.config import DEFAULT_INSIGHTFACE_ROOT
from facestudio.errors import BackendUnavailableError
from facestudio.face.types import Face

logger = logging.getLogger(__name__)

PACK_NAMES = ("antelopev2", "buffalo_l")
_DETECTION_PREFIXES = ("det_", "scrfd")
_RECOGNITION_PREFIXES = ("w600k", "glintr", "arcface", "ms1mv3")


@dataclass(frozen=True)
class InsightFacePack:
    """Paths of one insightface model pack's detection and recognition ONNX files."""

    name: str
    detection: Path
    recognition: Path | None


def find_insightface_pack(root: Path = DEFAULT_INSIGHTFACE_ROOT) -> InsightFacePack | None:
    """The first complete pack under `root/models`, or `None`; never downloads."""
    models = Path(root).expanduser() / "models"
    for name in PACK_NAMES:
        folder = models / name
        if not folder.is_dir():
            continue
        files = sorted(folder.glob("*.onnx"))
        detection = next((f for f in files if f.name.lower().startswith(_DETECTION_PREFIXES)), None)
        recognition = next((f for f in files if f.name.lower().startswith(_RECOGNITION_PREFIXES)), None)
        if detection is not None:
            return InsightFacePack(name=name, detection=detection, recognition=recognition)
    return None


def is_insightface_available(root: Path = DEFAULT_INSIGHTFACE_ROOT) -> bool:
    """True when the package imports and a model pack is on disk under `root`."""
    if find_insightface_pack(root) is None:
        return False
    try:
        import insightface  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def load_insightface_model(path: Path):
    try:
        from insightface.model_zoo import model_zoo
    except ImportError as err:
        raise BackendUnavailableError(
            "The insightface backend needs `pip install insightface onnxruntime`; the offline backend works without it."
        ) from err
    model = model_zoo.get_model(str(path))
    if model is None:
        raise BackendUnavailableError(f"{path} is not an insightface model this version recognises.")
    model.prepare(ctx_id=0 if _has_cuda_provider() else -1)
    return model


def _has_cuda_provider() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


class InsightFaceDetector:
    """SCRFD from an insightface pack: boxes, scores and the five landmarks in template order."""

    name = "insightface"

    def __init__(self, pack: InsightFacePack | None = None, score_threshold: float = 0.5,
                 input_size: tuple[int, int] = (640, 640), root: Path = DEFAULT_INSIGHTFACE_ROOT):
        pack = pack or find_insightface_pack(root)
        if pack is None:
            raise BackendUnavailableError(
                f"No insightface model pack found under {Path(root).expanduser() / 'models'} (looked for "
                f"{', '.join(PACK_NAMES)}); use the offline backend or put a pack there."
            )
        self.pack = pack
        self._model = load_insightface_model(pack.detection)
        self._model.prepare(ctx_id=0 if _has_cuda_provider() else -1, input_size=input_size,
                            det_thresh=score_threshold)
        self._lock = threading.Lock()

    def detect(self, pixels: np.ndarray) -> list[Face]:
        bgr = np.ascontiguousarray(pixels[:, :, ::-1])
        with self._lock:
            boxes, kpss = self._model.detect(bgr, max_num=0)
        faces = []
        for i, row in enumerate(boxes):
            faces.append(Face(bbox=np.asarray(row[:4], dtype=np.float64), score=float(row[4]),
                              kps=np.asarray(kpss[i], dtype=np.float64), landmarks=None, landmarks_source="scrfd"))
        return sorted(faces, key=lambda face: -face.area)

    def close(self) -> None:
        self._model = None
