"""Offline face detection with the models bundled in mediapipe 0.10.21: BlazeFace full-range plus the 478-point mesh.

BlazeFace sees the whole photo at 192x192, so on its own it misses faces smaller than about 1/15 of the photo.
To find small faces in group photos (about 30 px across) the photo is also scanned in overlapping tiles sized
so that such a face is big enough for the detector, on two threads. Each detection is then refined by the face
mesh on a square crop around it (black outside the photo, so faces cut by the border still get landmarks), which
gives precise eye centres (iris), nose tip and mouth corners and a tight box.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from facestudio.errors import BackendUnavailableError
from facestudio.face.geometry import SquareCrop, non_max_suppression
from facestudio.face.types import Face

logger = logging.getLogger(__name__)

# Face-mesh indices of the five template points: iris centres (refined mesh), nose tip, mouth corners.
MESH_KPS = (468, 473, 1, 61, 291)
# BlazeFace keypoints: eye (image left), eye (image right), nose tip, mouth centre, two ear tragions.
# Mouth corners are estimated from the mouth centre along the eye axis; 0.415 is the ratio of mouth width to eye
# distance in the ArcFace template (29.2 / 35.2 / 2).
MOUTH_HALF_WIDTH_PER_EYE_DISTANCE = 0.415
# BlazeFace full range recognises faces down to about 13 px of its 192 px input; a tile of 15x the smallest face
# wanted keeps such faces comfortably above that.
TILE_PER_MIN_FACE = 15
BORDER_PAD = 0.1  # black frame, as a fraction of the photo's longer side (capped at a third of a tile)
UNCONFIRMED_MIN_SCORE = 0.75
MESH_CROP_SIZE = 256
MESH_CROP_PER_FACE = 2.0


def is_mediapipe_available() -> bool:
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        return False
    return True


def _import_solutions():
    try:
        from mediapipe.python.solutions import face_detection, face_mesh
    except ImportError as err:
        raise BackendUnavailableError(
            "The offline face backend needs mediapipe 0.10.21; install it with `pip install mediapipe==0.10.21`."
        ) from err
    return face_detection, face_mesh


@dataclass(frozen=True, eq=False)
class Candidate:
    """A BlazeFace detection before refinement: box, score and its six keypoints, in photo pixels."""

    box: np.ndarray
    score: float
    blaze_kps: np.ndarray


class MediaPipeFaceDetector:
    """Detector with five landmarks and the 478-point mesh, using only the models inside the mediapipe wheel.

    Args:
        min_face_px: `int`, *optional*, defaults to 30. Smallest face (pixels across) the tiled scan looks for.
        score_threshold: `float`, *optional*, defaults to 0.5. Minimum BlazeFace confidence.
        max_faces: `int`, *optional*, defaults to 64. At most this many faces (the most confident) are refined.
        workers: `int`, *optional*, defaults to 2. Threads for the tiled scan.
    """

    name = "mediapipe"

    def __init__(self, min_face_px: int = 30, score_threshold: float = 0.5, max_faces: int = 64, workers: int = 2):
        self.min_face_px = int(min_face_px)
        self.score_threshold = float(score_threshold)
        self.max_faces = int(max_faces)
        self.workers = max(1, int(workers))
        face_detection, face_mesh = _import_solutions()
        self._face_detection = face_detection
        self._detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=self.score_threshold)
        self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                        min_detection_confidence=0.3)
        self._pool: ThreadPoolExecutor | None = None
        self._thread_local = threading.local()
        # MediaPipe graphs are not re-entrant; one detection at a time per detector object.
        self._lock = threading.Lock()

    # -- public -------------------------------------------------------------------------------------------------

    def detect(self, pixels: np.ndarray) -> list[Face]:
        """All faces in an `HxWx3` uint8 RGB array, largest first."""
        with self._lock:
            candidates = self.propose(pixels)
            faces = [self.refine(pixels, candidate) for candidate in candidates]
        # A detection the mesh could not confirm is kept only when the detector itself is sure: unconfirmed
        # low-score boxes are mostly hands, patterns and ears.
        faces = [f for f in faces if f.landmarks_source == "mesh" or f.score >= UNCONFIRMED_MIN_SCORE]
        return sorted(faces, key=lambda face: -face.area)

    def propose(self, pixels: np.ndarray, tiled: bool = True) -> list[Candidate]:
        """BlazeFace boxes over the whole photo (and tiles), duplicates removed, most confident first."""
        found = self._scan(pixels, tiled)
        keep = non_max_suppression([c.box for c in found], [c.score for c in found])[: self.max_faces]
        return [found[i] for i in keep]

    def close(self) -> None:
        for graph in (self._detector, self._mesh):
            graph.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- detection ------------------------------------------------------------------------------------------------

    def _scan(self, pixels: np.ndarray, tiled: bool = True) -> list[Candidate]:
        # A black frame around the photo: BlazeFace finds a face cut by the border far more often when the cut
        # runs into black than when it runs into the edge of its input.
        tile = TILE_PER_MIN_FACE * self.min_face_px
        pad = min(round(BORDER_PAD * max(pixels.shape[:2])), tile // 3)
        padded = cv2.copyMakeBorder(pixels, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        height, width = padded.shape[:2]
        found = self._detect_window(self._detector, padded, -pad, -pad)
        if tiled and max(height, width) > tile * 1.15:
            windows = list(_tiles(width, height, tile, overlap=max(96, 3 * self.min_face_px)))
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="facestudio-tiles")
            jobs = [self._pool.submit(self._detect_tile, padded, x, y, tile, pad) for x, y in windows]
            for job in jobs:
                found.extend(job.result())
        return found

    def _detect_tile(self, pixels: np.ndarray, x: int, y: int, tile: int, pad: int):
        detector = getattr(self._thread_local, "detector", None)
        if detector is None:
            detector = self._face_detection.FaceDetection(model_selection=1,
                                                          min_detection_confidence=self.score_threshold)
            self._thread_local.detector = detector
        window = np.ascontiguousarray(pixels[y : y + tile, x : x + tile])
        return self._detect_window(detector, window, x - pad, y - pad)

    @staticmethod
    def _detect_window(detector, window: np.ndarray, x_offset: int, y_offset: int):
        height, width = window.shape[:2]
        result = detector.process(window)
        found = []
        for detection in result.detections or []:
            rel = detection.location_data.relative_bounding_box
            box = np.array([rel.xmin * width, rel.ymin * height, (rel.xmin + rel.width) * width,
                            (rel.ymin + rel.height) * height]) + np.array([x_offset, y_offset, x_offset, y_offset])
            kps = np.array([[kp.x * width + x_offset, kp.y * height + y_offset]
                            for kp in detection.location_data.relative_keypoints])
            found.append(Candidate(box=box, score=float(detection.score[0]), blaze_kps=kps))
        return found

    # -- landmarks ------------------------------------------------------------------------------------------------

    def refine(self, pixels: np.ndarray, candidate: Candidate) -> Face:
        """Landmarks for one candidate from the face mesh, or from BlazeFace's points when the mesh fails."""
        box, score = candidate.box, candidate.score
        center = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        side = MESH_CROP_PER_FACE * max(box[2] - box[0], box[3] - box[1])
        crop = SquareCrop.around(center, side, MESH_CROP_SIZE)
        result = self._mesh.process(crop.extract(pixels))
        if result.multi_face_landmarks:
            mesh = np.array([[p.x * crop.size, p.y * crop.size] for p in result.multi_face_landmarks[0].landmark])
            landmarks = crop.to_image(mesh)
            if _inside(landmarks[1], box):  # the mesh found this face, not a neighbour in the crop
                kps = landmarks[list(MESH_KPS)]
                mesh_box = np.array([*landmarks.min(axis=0), *landmarks.max(axis=0)])
                return Face(bbox=mesh_box, score=score, kps=kps, landmarks=landmarks, landmarks_source="mesh")
        return Face(bbox=np.asarray(box, dtype=np.float64), score=score, kps=kps_from_blazeface(candidate.blaze_kps),
                    landmarks=None, landmarks_source="detector")


def kps_from_blazeface(points: np.ndarray) -> np.ndarray:
    """Five template points from BlazeFace's six (mouth corners estimated from the mouth centre)."""
    eye_left, eye_right, nose, mouth = points[0], points[1], points[2], points[3]
    half = MOUTH_HALF_WIDTH_PER_EYE_DISTANCE * (eye_right - eye_left)
    return np.stack([eye_left, eye_right, nose, mouth - half, mouth + half]).astype(np.float64)


def _inside(point: np.ndarray, box: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


def _tiles(width: int, height: int, tile: int, overlap: int):
    """Top-left corners of overlapping `tile`-sized windows covering the image, spread evenly."""

    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        count = math.ceil((length - overlap) / (tile - overlap))
        step = (length - tile) / (count - 1)
        return [round(i * step) for i in range(count)]

    for y in starts(height):
        for x in starts(width):
            yield x, y
