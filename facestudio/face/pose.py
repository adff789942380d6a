"""Body pose for the OpenPose ControlNet (`control_v11p_sd15_openpose`), extracted offline.

`--pose` takes either a photo of a person in the wanted pose or an OpenPose skeleton that was already rendered.
A photo goes through MediaPipe's bundled BlazePose model (33 landmarks, one person); its points are mapped onto
OpenPose's COCO-18 body model and drawn the way OpenPose draws them (limb list, palette, stick and dot sizes),
because that picture is what the ControlNet was trained on. A skeleton is recognised by a heuristic (mostly black,
a few saturated colours) and used as it is.

Left and right are the person's own, in MediaPipe and OpenPose alike: in a frontal photo the person's right
shoulder (`r_shoulder`) lies on the image's left.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from facestudio.errors import BackendUnavailableError, PoseNotFoundError

if TYPE_CHECKING:
    from facestudio.face.openpose_face import HandModel

POSE_KEYPOINT_NAMES = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip", "r_knee",
    "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)
NECK = 1
HEAD_KEYPOINTS = (0, 14, 15, 16, 17)
SHOULDER_KEYPOINTS = (2, 5)

# MediaPipe pose landmark for each COCO-18 keypoint; the neck has none (midpoint of the shoulders, 11 and 12).
_MEDIAPIPE_INDEX = (0, None, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
_MEDIAPIPE_SHOULDERS = (11, 12)
MEDIAPIPE_LANDMARKS = 33

# The 17 limbs OpenPose draws for the COCO-18 body model (pairs of keypoint indices), limb i in colour i.
OPENPOSE_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
# OpenPose's 18-colour palette (RGB as the ControlNet saw it), keypoint i in colour i.
OPENPOSE_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
LIMB_BRIGHTNESS = 0.6  # OpenPose dims the limbs to 60% before drawing the dots at full colour
# OpenPose's sizes for a map whose shorter side is 512 px (the annotator's resolution); they scale with the map.
STICK_HALF_WIDTH = 4
KEYPOINT_RADIUS = 4
REFERENCE_SIDE = 512

# BlazePose sees a 256 px crop; a larger photo only costs time in the conversion, so it is shrunk first.
ESTIMATION_MAX_SIDE = 1280

POSE_MODES = ("auto", "photo", "skeleton")


@dataclass(frozen=True, eq=False)
class BodyPose:
    """One person's body pose in OpenPose's COCO-18 layout (`POSE_KEYPOINT_NAMES`), in a `width x height` image.

    Attributes:
        keypoints: `float64[18, 2]` pixel coordinates (x, y). Points that are not `visible` keep the estimator's
            guess, which may lie outside the image; renderers ignore them.
        visible: `bool[18]`, whether each keypoint was seen (confident and inside the image).
        width, height: size of the image the coordinates refer to.
    """

    keypoints: np.ndarray
    visible: np.ndarray
    width: int
    height: int

    def __post_init__(self):
        keypoints = np.array(self.keypoints, dtype=np.float64)
        visible = np.array(self.visible, dtype=bool)
        if keypoints.shape != (len(POSE_KEYPOINT_NAMES), 2) or visible.shape != (len(POSE_KEYPOINT_NAMES),):
            raise ValueError(f"A body pose needs keypoints of shape (18, 2) and visible of shape (18,); got "
                             f"{keypoints.shape} and {visible.shape}.")
        width, height = _checked_size(self.width, self.height)
        keypoints.setflags(write=False)
        visible.setflags(write=False)
        object.__setattr__(self, "keypoints", keypoints)
        object.__setattr__(self, "visible", visible)
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)

    def scaled(self, width: int, height: int) -> BodyPose:
        """The same pose in the image resized (stretched, no letterbox) to `width x height`."""
        width, height = _checked_size(width, height)
        factors = np.array([width / self.width, height / self.height])
        return BodyPose(keypoints=self.keypoints * factors, visible=self.visible, width=width, height=height)

    def point(self, name: str) -> np.ndarray | None:
        """Pixel coordinates of the keypoint called `name` (see `POSE_KEYPOINT_NAMES`), or None when not visible."""
        index = POSE_KEYPOINT_NAMES.index(name)
        return self.keypoints[index].copy() if self.visible[index] else None


def pose_from_mediapipe(landmarks: np.ndarray, width: int, height: int, min_visibility: float = 0.5) -> BodyPose:
    """COCO-18 pose from MediaPipe's 33 landmarks, given as `[33, 3]` rows of normalised x, y and visibility.

    A keypoint is visible when MediaPipe's visibility reaches `min_visibility` and it lies inside the image (the
    model also guesses where out-of-frame joints are); the neck is the shoulders' midpoint, visible with both.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (MEDIAPIPE_LANDMARKS, 3):
        raise ValueError(f"MediaPipe pose landmarks must have shape (33, 3); got {landmarks.shape}.")
    width, height = _checked_size(width, height)
    points = landmarks[:, :2] * np.array([width, height])
    inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
    seen = (landmarks[:, 2] >= min_visibility) & inside

    keypoints = np.zeros((len(POSE_KEYPOINT_NAMES), 2))
    visible = np.zeros(len(POSE_KEYPOINT_NAMES), dtype=bool)
    for index, source in enumerate(_MEDIAPIPE_INDEX):
        if source is None:
            left, right = _MEDIAPIPE_SHOULDERS
            keypoints[index] = (points[left] + points[right]) / 2
            visible[index] = seen[left] and seen[right]
        else:
            keypoints[index] = points[source]
            visible[index] = seen[source]
    return BodyPose(keypoints=keypoints, visible=visible, width=width, height=height)


def is_usable(pose: BodyPose) -> bool:
    """Whether a pose says enough to condition on: some of the head and at least one shoulder are visible."""
    return bool(pose.visible[list(HEAD_KEYPOINTS)].any() and pose.visible[list(SHOULDER_KEYPOINTS)].any())


class PoseEstimator:
    """One person's body pose from MediaPipe's bundled BlazePose (full) model; the graph is built on first use.

    Args:
        min_visibility: `float`, *optional*, defaults to 0.5. A landmark counts as seen when MediaPipe's visibility
            reaches this.
    """

    def __init__(self, min_visibility: float = 0.5):
        if not 0.0 <= min_visibility <= 1.0:
            raise ValueError(f"`min_visibility` must be between 0 and 1; got {min_visibility}.")
        self.min_visibility = float(min_visibility)
        self._graph = None
        # MediaPipe graphs are not re-entrant; one estimate at a time per estimator.
        self._lock = threading.Lock()

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _open(self):
        try:
            from mediapipe.python.solutions import pose as mp_pose
        except ImportError as err:
            raise BackendUnavailableError(
                "Pose extraction needs mediapipe 0.10.21; install it with `pip install mediapipe==0.10.21`."
            ) from err
        # model_complexity=1 is the model inside the wheel; 0 and 2 would be downloaded on first use.
        return mp_pose.Pose(static_image_mode=True, model_complexity=1, smooth_landmarks=False,
                            enable_segmentation=False, min_detection_confidence=0.5)

    def estimate(self, image: Image.Image) -> BodyPose | None:
        """The pose of the most prominent person in an upright RGB image, or None when there is no usable one."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        width, height = rgb.size
        shrink = ESTIMATION_MAX_SIDE / max(width, height)
        if shrink < 1:
            rgb = rgb.resize((max(1, round(width * shrink)), max(1, round(height * shrink))),
                             Image.Resampling.BILINEAR)
        pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
        with self._lock:
            if self._graph is None:
                self._graph = self._open()
            result = self._graph.process(pixels)
        if result.pose_landmarks is None:
            return None
        landmarks = np.array([[p.x, p.y, p.visibility] for p in result.pose_landmarks.landmark])
        pose = pose_from_mediapipe(landmarks, width, height, self.min_visibility)
        return pose if is_usable(pose) else None

    def close(self) -> None:
        with self._lock:
            if self._graph is not None:
                self._graph.close()
                self._graph = None


def render_openpose(pose: BodyPose, width: int | None = None, height: int | None = None) -> Image.Image:
    """The pose drawn as OpenPose draws it: coloured limbs (dimmed) and keypoint dots on black, as RGB.

    The map is `width x height` (defaults to the pose's image; a missing side keeps its aspect ratio) and the pose
    is stretched onto it. Sticks are ellipses of half-width 4 px and dots have radius 4 px at a shorter side of
    512 px, scaled with the map, so the ControlNet sees strokes of the thickness it was trained on.
    """
    if width is None and height is None:
        width, height = pose.width, pose.height
    elif width is None:
        width = max(1, round(pose.width * height / pose.height))
    elif height is None:
        height = max(1, round(pose.height * width / pose.width))
    width, height = _checked_size(width, height)
    if (width, height) != (pose.width, pose.height):
        pose = pose.scaled(width, height)

    scale = min(width, height) / REFERENCE_SIDE
    stick = max(1, round(STICK_HALF_WIDTH * scale))
    radius = max(1, round(KEYPOINT_RADIUS * scale))
    canvas = np.zeros((height, width, 3), np.uint8)
    for index, (a, b) in enumerate(OPENPOSE_LIMBS):
        if not (pose.visible[a] and pose.visible[b]):
            continue
        start, end = pose.keypoints[a], pose.keypoints[b]
        center = (start + end) / 2
        length = float(np.hypot(*(end - start)))
        angle = math.degrees(math.atan2(end[1] - start[1], end[0] - start[0]))
        polygon = cv2.ellipse2Poly((round(center[0]), round(center[1])), (max(1, round(length / 2)), stick),
                                   round(angle), 0, 360, 1)
        color = tuple(int(c * LIMB_BRIGHTNESS) for c in OPENPOSE_COLORS[index])
        cv2.fillConvexPoly(canvas, polygon, color)
    for index, (x, y) in enumerate(pose.keypoints):
        if pose.visible[index]:
            cv2.circle(canvas, (round(x), round(y)), radius, OPENPOSE_COLORS[index], thickness=cv2.FILLED)
    return Image.fromarray(canvas, "RGB")


def looks_like_pose_map(image: Image.Image) -> bool:
    """Heuristic: is this an already-rendered skeleton rather than a photo?

    A skeleton is mostly pure black with some strokes, and nearly all of its lit pixels are saturated colours
    (JPEG and resizing keep that). Photos, dark ones included, have lit greys and skin tones or a noisy black.
    """
    small = image if image.mode == "RGB" else image.convert("RGB")
    if max(small.size) > 256:
        small = small.copy()
        small.thumbnail((256, 256), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.float32)
    brightest = pixels.max(axis=2)
    chroma = brightest - pixels.min(axis=2)
    dark = brightest < 48
    lit = ~dark
    dark_share, lit_share = float(dark.mean()), float(lit.mean())
    if dark_share < 0.7 or lit_share < 0.002:
        return False
    if float(brightest[dark].mean()) > 10:  # the background must be black, not a shadowy photo
        return False
    saturated = chroma[lit] >= 0.5 * brightest[lit]
    return float(saturated.mean()) >= 0.75


def pad_like_release(image: Image.Image, aspect: float = 1.0) -> tuple[Image.Image, tuple[int, int]]:
    """The pose photo padded with black to `aspect` (width / height) the way the FACT release pads it to a square:
    centred horizontally when too tall, padded at the top only when too wide (the person keeps their feet on the
    bottom edge). Returns the padded image and the (x, y) offset of the original in it."""
    width, height = image.size
    if width < round(height * aspect):
        new_width = round(height * aspect)
        offset = ((new_width - width) // 2, 0)
        size = (new_width, height)
    elif width > round(height * aspect):
        new_height = round(width / aspect)
        offset = (0, new_height - height)
        size = (width, new_height)
    else:
        return image.copy(), (0, 0)
    canvas = Image.new("RGB", size, (0, 0, 0))
    canvas.paste(image.convert("RGB"), offset)
    return canvas, offset


def pose_condition(image: Image.Image, width: int, height: int, *, name: str = "the pose image", mode: str = "auto",
                   estimator: PoseEstimator | None = None, pad: bool = False,
                   hands: HandModel | None = None) -> Image.Image:
    """The OpenPose ControlNet's conditioning image, `width x height` RGB, from a photo or a rendered skeleton.

    `mode`: "auto" uses an image that `looks_like_pose_map` as it is and estimates the pose in anything else;
    "photo" always estimates; "skeleton" always uses the image as it is. Either way the result is stretched to
    `width x height` (a plain resize or coordinate mapping, no letterbox), so pass a size with the pose image's
    aspect ratio to keep its proportions. `estimator` is used (and left open) when given; otherwise one is made
    and closed here. Raises `PoseNotFoundError` naming `name` when a photo has no usable pose.

    `pad`: pad a photo to the map's aspect ratio first (`pad_like_release`; for a square map exactly the release's
    square padding), so the pose is not stretched. `hands`: a `facestudio.face.openpose_face.HandModel` whose hands
    are drawn over the body as OpenPose draws them (the release's `openpose_full`).
    """
    if mode not in POSE_MODES:
        raise ValueError(f"`mode` must be one of {', '.join(repr(m) for m in POSE_MODES)}; got {mode!r}.")
    width, height = _checked_size(width, height)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if mode == "skeleton" or (mode == "auto" and looks_like_pose_map(rgb)):
        if rgb.size == (width, height):
            return rgb.copy()
        return rgb.resize((width, height), Image.Resampling.BILINEAR)

    if pad:
        rgb, _ = pad_like_release(rgb, width / height)
    owned = estimator is None
    active = PoseEstimator() if estimator is None else estimator
    try:
        pose = active.estimate(rgb)
    finally:
        if owned:
            active.close()
    if pose is None:
        raise PoseNotFoundError(f"No body pose found in {name}; use a photo where the person's head and shoulders "
                                f"are visible, or a rendered OpenPose skeleton.")
    body = render_openpose(pose, width, height)
    if hands is None:
        return body
    from facestudio.face.openpose_face import draw_face_and_hands

    factors = np.array([width / rgb.width, height / rgb.height])
    found = [points * factors for points in hands.hands(rgb)]
    return draw_face_and_hands(width, height, [], found, canvas=np.asarray(body))


def _checked_size(width: int, height: int) -> tuple[int, int]:
    if isinstance(width, bool) or isinstance(height, bool) or int(width) != width or int(height) != height:
        raise ValueError(f"Image size must be whole numbers of pixels; got {width}x{height}.")
    if width < 1 or height < 1:
        raise ValueError(f"Image size must be at least 1x1 pixels; got {width}x{height}.")
    return int(width), int(height)
