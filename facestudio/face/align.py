"""5-point alignment onto the ArcFace 112x112 template, exactly as FACT's reference preprocessing does it (FACT.md §1).

The released FACT weights saw faces warped by a least-squares similarity transform (Umeyama, as computed by
`skimage.transform.SimilarityTransform`) onto this template with a black border; any other alignment hands the
encoder inputs it was not trained on.
"""

from __future__ import annotations

import cv2
import numpy as np

from facestudio.errors import FaceStudioError

ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
ALIGNED_SIZE = 112


def similarity_matrix(kps: np.ndarray, template: np.ndarray = ARCFACE_TEMPLATE, size: int = ALIGNED_SIZE) -> np.ndarray:
    """The 2x3 least-squares similarity transform taking `kps` (5x2) onto the template scaled to `size`."""
    from skimage.transform import SimilarityTransform

    kps = np.asarray(kps, dtype=np.float64)
    if kps.shape != (5, 2) or not np.isfinite(kps).all():
        raise FaceStudioError(f"Alignment needs five finite (x, y) landmarks; got an array of shape {kps.shape}.")
    target = template * (size / ALIGNED_SIZE)
    transform = SimilarityTransform.from_estimate(kps, target)
    if not transform:
        raise FaceStudioError("The five landmarks are degenerate (all in one place); the face cannot be aligned.")
    return transform.params[:2].copy()


def align_face(pixels: np.ndarray, kps: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """The face warped onto the ArcFace template: `size x size x C` uint8, black where the photo ends."""
    matrix = similarity_matrix(kps, size=size)
    return cv2.warpAffine(np.ascontiguousarray(pixels), matrix, (size, size), borderValue=0.0)


def to_unit_range(aligned: np.ndarray) -> np.ndarray:
    """`HxWx3` uint8 RGB → `3xHxW` float32 in [-1, 1]: `(x / 255 - 0.5) / 0.5`, the encoder's input scaling."""
    values = aligned.astype(np.float32) / 255.0
    return np.ascontiguousarray(((values - 0.5) / 0.5).transpose(2, 0, 1))
