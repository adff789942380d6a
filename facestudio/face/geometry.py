"""Small geometry helpers shared by the detectors and the parser: boxes, overlap, square crops with padding."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def box_overlap_min(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box: catches a small duplicate box lying inside a large one."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(inter / smaller) if smaller > 0 else 0.0


def non_max_suppression(boxes: list[np.ndarray], scores: list[float], iou_threshold: float = 0.4,
                        containment_threshold: float = 0.8) -> list[int]:
    """Indices of the boxes to keep, best score first; a box overlapping a kept one is dropped."""
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        if all(box_iou(boxes[i], boxes[j]) < iou_threshold and box_overlap_min(boxes[i], boxes[j]) < containment_threshold
               for j in keep):
            keep.append(i)
    return keep


@dataclass(frozen=True)
class SquareCrop:
    """A square window of an image (it may reach outside; the outside is black), resampled to `size` pixels."""

    x0: float
    y0: float
    side: float
    size: int

    @classmethod
    def around(cls, center: np.ndarray, side: float, size: int) -> SquareCrop:
        side = max(float(side), 2.0)
        return cls(float(center[0]) - side / 2, float(center[1]) - side / 2, side, int(size))

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return self.size / self.side

    def matrix(self) -> np.ndarray:
        """The 2x3 affine matrix from image to crop coordinates."""
        s = self.scale
        return np.array([[s, 0.0, -self.x0 * s], [0.0, s, -self.y0 * s]], dtype=np.float64)

    def extract(self, pixels: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        flags = interpolation if self.scale >= 1 else cv2.INTER_AREA
        return cv2.warpAffine(pixels, self.matrix(), (self.size, self.size), flags=flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        return points / self.scale + np.array([self.x0, self.y0])

    def paste(self, crop_values: np.ndarray, image_shape: tuple[int, int],
              interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Map a crop-sized array back onto an image-sized canvas (zeros outside the window)."""
        height, width = image_shape
        return cv2.warpAffine(crop_values, self.matrix(), (width, height), flags=interpolation | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
