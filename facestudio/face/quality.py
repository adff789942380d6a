"""How usable a face is as a reference or training photo: its size and sharpness, measured the same way everywhere.

The identity tab warns with these numbers and dataset preparation rejects with them, so a photo the studio calls
"blurry" is the photo training would reject.
"""

from __future__ import annotations

import cv2
import numpy as np

from facestudio.face.geometry import SquareCrop
from facestudio.face.types import Face

#: The face is measured for sharpness at this size: about the smallest face kept (96 px), so a sharp small face is
#: hardly upscaled (which would blur it), and the resolution the face encoder sees (112x112).
SHARPNESS_SIZE = 112
#: Below this the face is called blurry. Measured on the shared portraits: sharp 320-1640, a Gaussian blur of 1% of
#: the face width 63-107, of 1.5% 26-44.
MIN_SHARPNESS = 50.0
#: Narrower faces are upscaled more than 2x in a 512 training crop (the face is ~205 px wide there).
MIN_FACE_PX = 96
#: A second face with at least this fraction of the largest face's area makes "whose face?" ambiguous.
SEVERAL_FACES_RATIO = 0.5


def face_sharpness(pixels: np.ndarray, face: Face) -> float:
    """Variance of the Laplacian of the face's square, resized to `SHARPNESS_SIZE` grey pixels.

    A fixed size makes the number independent of the photo's resolution: a Gaussian blur of the same fraction of the
    face width gives about the same value on a 90 px and on a 290 px face.
    """
    window = SquareCrop.around(face.center, max(face.width, face.height), SHARPNESS_SIZE)
    grey = cv2.cvtColor(window.extract(pixels), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def competing_faces(faces: list[Face], ratio: float = SEVERAL_FACES_RATIO) -> int:
    """How many faces are at least `ratio` of the largest face's area (including it); 0 without faces."""
    if not faces:
        return 0
    largest = max(face.area for face in faces)
    return sum(1 for face in faces if face.area >= ratio * largest)
