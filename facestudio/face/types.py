"""Plain results of face analysis: numpy arrays in upright-image pixel coordinates, no framework objects."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Names of the five landmarks, in FACT's template order (FACT.md §1): image-left eye, image-right eye, nose tip,
#: image-left mouth corner, image-right mouth corner (for an upright face).
KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Attributes:
        bbox: `float[4]`, `x0, y0, x1, y1` in pixels of the upright image.
        score: detector confidence in [0, 1].
        kps: `float[5, 2]`, the five landmarks in `KEYPOINT_NAMES` order.
        landmarks: `float[478, 2]` MediaPipe face-mesh points, or `None` when only the detector's points exist.
        landmarks_source: which model gave `kps` ("mesh", "detector" or "scrfd").
    """

    bbox: np.ndarray
    score: float
    kps: np.ndarray
    landmarks: np.ndarray | None = None
    landmarks_source: str = "detector"

    @property
    def width(self) -> float:
        return float(self.bbox[2] - self.bbox[0])

    @property
    def height(self) -> float:
        return float(self.bbox[3] - self.bbox[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.bbox[0] + self.bbox[2]) / 2, (self.bbox[1] + self.bbox[3]) / 2])

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.kps[1] - self.kps[0]))

    def scaled(self, factor: float) -> Face:
        """The same face with every coordinate multiplied by `factor` (to map between analysis and original scale)."""
        return Face(
            bbox=self.bbox * factor,
            score=self.score,
            kps=self.kps * factor,
            landmarks=None if self.landmarks is None else self.landmarks * factor,
            landmarks_source=self.landmarks_source,
        )

    def to_dict(self) -> dict:
        return {
            "bbox": [round(float(v), 2) for v in self.bbox],
            "score": round(float(self.score), 4),
            "kps": [[round(float(x), 2), round(float(y), 2)] for x, y in self.kps],
        }


@dataclass(frozen=True)
class ImageAnalysis:
    """Every face found in one photo, largest first, and which backend found them."""

    width: int
    height: int
    backend: str
    faces: list[Face] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "backend": self.backend,
                "faces": [face.to_dict() for face in self.faces]}
