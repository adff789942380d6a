"""Face parsing into regions, from the face mesh and MediaPipe's bundled selfie (person) segmentation.

Regions: skin, brows, eyes, nose, lips, mouth (inside the lips), hair, body (the rest of the person) and
background. From them come the three masks later stages need:
- `face_mask`: the face itself (FAIR's region, FACT.md §7);
- `head_mask`: face + hair by FACT's recipe (FACT.md §1), which blacks out everything else in a reference photo;
- `inpaint_mask`: the face or head region dilated and feathered, for inpainting into a template.

The mesh gives exact polygons for the inner face. Hair has no bundled model, so it is the part of the person mask
inside a head-shaped ellipse built in the face's own frame (so it follows a tilted head), outside the face and
above the chin. Parsing runs on a window around the face, so its cost does not grow with the photo's size.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from facestudio.errors import BackendUnavailableError
from facestudio.face.geometry import SquareCrop
from facestudio.face.types import Face

REGIONS = ("background", "skin", "brows", "eyes", "nose", "lips", "mouth", "hair", "body")
LABELS = {name: index for index, name in enumerate(REGIONS)}
FACE_REGIONS = ("skin", "brows", "eyes", "nose", "lips", "mouth")
HEAD_REGIONS = (*FACE_REGIONS, "hair")

# Colours for overlays, one per region (RGB).
REGION_COLORS = {
    "background": (0, 0, 0), "skin": (255, 204, 153), "brows": (120, 70, 20), "eyes": (0, 160, 255),
    "nose": (255, 120, 0), "lips": (220, 20, 60), "mouth": (120, 0, 60), "hair": (140, 60, 200),
    "body": (60, 180, 75),
}

SEGMENTATION_SIZE = 256
WINDOW_PER_FACE = 3.2  # the parsing window spans 3.2 face heights, enough for hair above and beside the face
PERSON_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)
class FaceParsing:
    """Region labels for one face of one image.

    Attributes:
        labels: `uint8[H, W]`, an index into `REGIONS` per pixel of the full image.
        person: `float32[H, W]`, the probability that a pixel belongs to a person (0 outside the parsing window).
        face: the `Face` that was parsed.
    """

    labels: np.ndarray
    person: np.ndarray
    face: Face

    def mask(self, *regions: str) -> np.ndarray:
        unknown = [r for r in regions if r not in LABELS]
        if unknown:
            raise ValueError(f"Unknown face regions {unknown}; choose from {', '.join(REGIONS)}.")
        return np.isin(self.labels, [LABELS[r] for r in regions])

    @property
    def face_mask(self) -> np.ndarray:
        return self.mask(*FACE_REGIONS)

    @property
    def hair_mask(self) -> np.ndarray:
        return self.mask("hair")

    @property
    def person_mask(self) -> np.ndarray:
        return self.person >= PERSON_THRESHOLD

    def head_mask(self) -> np.ndarray:
        """FACT.md §1: face + hair, dilated by a square of side max(1, sqrt(face area)/20), intersected with the
        person mask, largest contour filled, OR the face mask."""
        face = self.face_mask
        face_area = int(face.sum())
        side = max(1, int(np.sqrt(face_area) / 20))
        grown = cv2.dilate((face | self.hair_mask).astype(np.uint8), np.ones((side, side), np.uint8))
        grown &= self.person_mask.astype(np.uint8)
        filled = np.zeros_like(grown)
        contours, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        if contours:
            largest = max(contours, key=cv2.contourArea)
            cv2.drawContours(filled, [largest], -1, 1, thickness=cv2.FILLED)
        return filled.astype(bool) | face

    def inpaint_mask(self, region: str = "face", dilate_px: int | None = None, feather_px: int | None = None) -> np.ndarray:
        """`float32[H, W]` in [0, 1]: the face (or head) region grown by `dilate_px` and softened over `feather_px`.

        Defaults scale with the face: dilation 8% and feathering 6% of the face height.
        """
        if region == "face":
            base = self.face_mask
        elif region == "head":
            base = self.head_mask()
        else:
            raise ValueError(f"`region` must be 'face' or 'head'; got {region!r}.")
        size = max(self.face.height, self.face.width, 1.0)
        dilate_px = round(0.08 * size) if dilate_px is None else int(dilate_px)
        feather_px = round(0.06 * size) if feather_px is None else int(feather_px)
        if dilate_px < 0 or feather_px < 0:
            raise ValueError(f"`dilate_px` and `feather_px` must be >= 0; got {dilate_px} and {feather_px}.")
        mask = base.astype(np.uint8)
        if dilate_px > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
            mask = cv2.dilate(mask, kernel)
        soft = mask.astype(np.float32)
        if feather_px > 0:
            soft = cv2.GaussianBlur(soft, (0, 0), sigmaX=feather_px / 2.0)
            # Feather outward only: the region itself stays fully masked.
            soft = np.maximum(soft, mask.astype(np.float32))
        return np.clip(soft, 0.0, 1.0)

    def color_map(self) -> np.ndarray:
        """`uint8[H, W, 3]` with one colour per region, for overlays."""
        palette = np.array([REGION_COLORS[name] for name in REGIONS], dtype=np.uint8)
        return palette[self.labels]


class FaceParser:
    """Parses faces with MediaPipe's bundled selfie segmentation (person mask) and the face mesh polygons."""

    def __init__(self):
        try:
            from mediapipe.python.solutions import selfie_segmentation
        except ImportError as err:
            raise BackendUnavailableError(
                "Face parsing needs mediapipe 0.10.21; install it with `pip install mediapipe==0.10.21`."
            ) from err
        self._segmenter = selfie_segmentation.SelfieSegmentation(model_selection=0)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._segmenter.close()

    def person_probability(self, pixels: np.ndarray, crop: SquareCrop) -> np.ndarray:
        with self._lock:
            result = self._segmenter.process(crop.extract(pixels))
        return np.ascontiguousarray(result.segmentation_mask, dtype=np.float32)

    def parse(self, pixels: np.ndarray, face: Face) -> FaceParsing:
        """Regions of `face` in the `HxWx3` uint8 RGB image `pixels` (full-image arrays, zero outside a window)."""
        height, width = pixels.shape[:2]
        frame = FaceFrame.of(face)
        crop = SquareCrop.around(frame.center - frame.up * 0.15 * frame.height, WINDOW_PER_FACE * frame.height,
                                 SEGMENTATION_SIZE)
        x0, y0 = max(0, int(np.floor(crop.x0))), max(0, int(np.floor(crop.y0)))
        x1, y1 = min(width, int(np.ceil(crop.x0 + crop.side))), min(height, int(np.ceil(crop.y0 + crop.side)))
        window_w, window_h = max(1, x1 - x0), max(1, y1 - y0)
        offset = np.array([x0, y0], dtype=np.float64)

        local_crop = SquareCrop(crop.x0 - x0, crop.y0 - y0, crop.side, crop.size)
        person_local = local_crop.paste(self.person_probability(pixels, crop), (window_h, window_w))

        labels_local = np.zeros((window_h, window_w), np.uint8)
        person_bin = (person_local >= PERSON_THRESHOLD).astype(np.uint8)
        labels_local[person_bin.astype(bool)] = LABELS["body"]
        _paint_hair(labels_local, person_bin, frame, offset)
        polygons = mesh_polygons(face.landmarks) if face.landmarks is not None else keypoint_polygons(face)
        for region in ("skin", "brows", "eyes", "nose", "lips", "mouth"):
            for polygon in polygons.get(region, []):
                cv2.fillPoly(labels_local, [np.round(polygon - offset).astype(np.int32)], LABELS[region])

        labels = np.zeros((height, width), np.uint8)
        person = np.zeros((height, width), np.float32)
        labels[y0:y1, x0:x1] = labels_local
        person[y0:y1, x0:x1] = person_local
        return FaceParsing(labels=labels, person=person, face=face)


@dataclass(frozen=True)
class FaceFrame:
    """A face's own axes: centre, `up` (chin to forehead) and `right` unit vectors, height and width in pixels."""

    center: np.ndarray
    up: np.ndarray
    right: np.ndarray
    height: float
    width: float
    chin: np.ndarray

    @classmethod
    def of(cls, face: Face) -> FaceFrame:
        eyes_mid = (face.kps[0] + face.kps[1]) / 2
        mouth_mid = (face.kps[3] + face.kps[4]) / 2
        up = eyes_mid - mouth_mid
        norm = np.linalg.norm(up)
        up = up / norm if norm > 1e-6 else np.array([0.0, -1.0])
        right = np.array([-up[1], up[0]])
        if face.landmarks is not None:
            chin, top = face.landmarks[152], face.landmarks[10]
            height = float(np.linalg.norm(top - chin))
            width = float(np.linalg.norm(face.landmarks[454] - face.landmarks[234]))
            center = (top + chin) / 2
        else:
            height, width = face.height, face.width
            center = face.center
            chin = center - up * height / 2
        height = max(height, 1.0)
        return cls(center=center, up=up, right=right, height=height, width=max(width, 1.0), chin=chin)


def _paint_hair(labels: np.ndarray, person: np.ndarray, frame: FaceFrame, offset: np.ndarray) -> None:
    """Hair: person pixels in a head-shaped ellipse around the face, above the chin (face pixels overwrite later).

    The ellipse is centred 0.2 face heights above the face centre and reaches about 0.7 heights above the forehead
    and 0.35 face widths beyond each cheek; the cut sits 0.35 heights below the face centre, along the face's axes.
    """
    head = np.zeros_like(labels)
    center = frame.center + frame.up * 0.2 * frame.height - offset
    angle = float(np.degrees(np.arctan2(frame.right[1], frame.right[0])))
    axes = (max(1, round(0.85 * frame.width)), max(1, round(0.95 * frame.height)))
    cv2.ellipse(head, (round(center[0]), round(center[1])), axes, angle, 0, 360, 1, thickness=cv2.FILLED)
    # Remove everything below the cut line: a large quadrilateral on the chin side of it.
    far = 10.0 * (frame.height + frame.width)
    cut = frame.center - frame.up * 0.35 * frame.height - offset
    below = np.array([cut - frame.right * far, cut + frame.right * far,
                      cut + frame.right * far - frame.up * far, cut - frame.right * far - frame.up * far])
    cv2.fillPoly(head, [np.round(below).astype(np.int32)], 0)
    labels[(head & person).astype(bool)] = LABELS["hair"]


@lru_cache(maxsize=1)
def _mesh_region_indices() -> dict[str, list[np.ndarray]]:
    from mediapipe.python.solutions import face_mesh_connections as c

    lips = sorted(_loops(c.FACEMESH_LIPS), key=len, reverse=True)
    return {
        "skin": _loops(c.FACEMESH_FACE_OVAL),
        "brows": [_join_paths(_loops(c.FACEMESH_LEFT_EYEBROW)), _join_paths(_loops(c.FACEMESH_RIGHT_EYEBROW))],
        "eyes": _loops(c.FACEMESH_LEFT_EYE) + _loops(c.FACEMESH_RIGHT_EYE),
        "nose": [np.array(sorted({i for edge in c.FACEMESH_NOSE for i in edge}))],
        "lips_loops": lips,
    }


def mesh_polygons(landmarks: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Polygons (image coordinates) of each face region from the 478-point mesh, in painting order."""
    indices = _mesh_region_indices()
    polygons: dict[str, list[np.ndarray]] = {region: [landmarks[loop] for loop in indices[region]]
                                             for region in ("skin", "brows", "eyes")}
    polygons["nose"] = [_convex_hull(landmarks[indices["nose"][0]])]
    loops = [landmarks[loop] for loop in indices["lips_loops"]]
    areas = [abs(cv2.contourArea(loop.astype(np.float32))) for loop in loops]
    outer, inner = (loops[0], loops[1]) if areas[0] >= areas[1] else (loops[1], loops[0])
    polygons["lips"] = [outer]
    polygons["mouth"] = [inner]
    return polygons


def keypoint_polygons(face: Face) -> dict[str, list[np.ndarray]]:
    """Coarse regions from the five landmarks alone (used when the mesh failed, e.g. on tiny faces)."""
    frame = FaceFrame.of(face)
    eye_distance = max(face.eye_distance, 1.0)
    mouth_mid = (face.kps[3] + face.kps[4]) / 2
    mouth_width = max(float(np.linalg.norm(face.kps[4] - face.kps[3])), 1.0)
    return {
        "skin": [_ellipse(frame.center, frame.up, frame.width * 0.5, frame.height * 0.55)],
        "eyes": [_ellipse(face.kps[0], frame.up, eye_distance * 0.22, eye_distance * 0.1),
                 _ellipse(face.kps[1], frame.up, eye_distance * 0.22, eye_distance * 0.1)],
        "nose": [_ellipse(face.kps[2] + frame.up * eye_distance * 0.2, frame.up, eye_distance * 0.18,
                          eye_distance * 0.35)],
        "lips": [_ellipse(mouth_mid, frame.up, mouth_width * 0.55, mouth_width * 0.25)],
    }


def _ellipse(center: np.ndarray, up: np.ndarray, half_width: float, half_height: float, points: int = 32) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    right = np.array([-up[1], up[0]])
    return center + np.outer(np.cos(angles) * half_width, right) + np.outer(np.sin(angles) * half_height, up)


def _convex_hull(points: np.ndarray) -> np.ndarray:
    return cv2.convexHull(points.astype(np.float32)).reshape(-1, 2).astype(np.float64)


def _loops(connections) -> list[np.ndarray]:
    """Ordered vertex lists of the cycles (or paths) formed by a set of mesh edges."""
    adjacency: dict[int, set[int]] = {}
    for a, b in connections:
        adjacency.setdefault(a, set()).add(b)
        adjacency.setdefault(b, set()).add(a)
    seen: set[int] = set()
    result = []
    # Start paths at an endpoint (degree 1) so they come out in order; cycles start anywhere.
    starts = sorted(adjacency, key=lambda v: (len(adjacency[v]) != 1, v))
    for start in starts:
        if start in seen:
            continue
        order, previous, current = [start], None, start
        seen.add(start)
        while True:
            following = [n for n in adjacency[current] if n != previous and n not in seen]
            if not following:
                break
            previous, current = current, min(following)
            order.append(current)
            seen.add(current)
        result.append(np.array(order))
    return result


def _join_paths(paths: list[np.ndarray]) -> np.ndarray:
    """Two open polylines (a brow's lower and upper edge) joined into one closed outline."""
    if len(paths) == 1:
        return paths[0]
    first, second = paths[0], paths[1]
    return np.concatenate([first, second[::-1]])
