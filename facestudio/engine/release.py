"""The FACT release's template inpainting (`recipe=release`, FACT.md §6), on diffusers' ControlNet pipelines.

Per chosen template face:
1. a square crop around the face (side = max(face w, h) / 0.7, black outside the photo) at the working side;
2. stage 1: text-to-image with FACT (s = 0.5) and the OpenPose ControlNet on the crop's body and hands, CFG 5;
3. the stage-1 face warped onto the template face's 5 points, used only to draw OpenPose face (and hand) keypoints;
4. stage 2: the ORIGINAL crop inpainted with [OpenPose face keypoints, Canny edges outside the face] at scales
   [1.0, 0.2], denoise 0.6, CFG 5, the request's face strength (release: 0.55), inside the release's mask;
5. a correction pass (strength 0.025, an empty mask) whose drift outside the person is added back, then a refinement
   pass at strength 0.1 with both ControlNets at 0.8 (Canny of the stage-2 result, its face keypoints);
6. paste back with a grown, blurred mask. Unlike the release (which pastes the whole crop), the paste mask stays
   around the repainted region, so every pixel outside it is the template's own, bit for bit.

This module holds the geometry (pure numpy, tested on its own) and `run_release_stages`, which makes the pipeline
calls it is given; the engine (`generation.py`) loads the models and writes the PNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image

from facestudio.engine.compositing import CropBox
from facestudio.errors import FaceNotFoundError

if TYPE_CHECKING:
    from facestudio.face import FaceAnalyzer
    from facestudio.face.openpose_face import FaceKeypointModel, HandModel
    from facestudio.face.pose import PoseEstimator
    from facestudio.face.types import Face, ImageAnalysis

#: The release's numbers (FACT.md §6).
FACE_SHARE = 0.7  # the face box spans 70% of the crop's side
RELEASE_CFG = 5.0
STAGE1_FACE_STRENGTH = 0.5
STAGE2_CONTROL_SCALES = (1.0, 0.2)  # [OpenPose face keypoints, Canny]
REFINE_CONTROL_SCALES = (0.8, 0.8)
CORRECTION_STRENGTH = 0.025
REFINE_STRENGTH = 0.1
CANNY_THRESHOLDS = (100, 200)
MASK_GROW = 0.04  # x sqrt(face area), all around
MASK_GROW_BELOW_EYES = 0.1  # x sqrt(area), below the eye line, limited to face | warped stage-1 face
CANNY_FACE_GROW = 0.05  # the face (grown below the eyes) is blanked in the Canny map
REFINE_GROW = 0.02
RELEASE_SCHEDULER = "pndm"
HUMAN_BLUR = 21  # px at 512: the person mask is softened before the drift correction


@dataclass(frozen=True)
class SquareCrop:
    """A square of `side` template pixels at (`left`, `top`), possibly reaching outside the photo, seen at `out` px."""

    left: int
    top: int
    side: int
    out: int

    @classmethod
    def around(cls, bbox: np.ndarray, out: int) -> SquareCrop:
        """The release's crop: centred on the face box, side = max(w, h) / 0.7."""
        x0, y0, x1, y1 = (float(v) for v in bbox)
        side = max(8, round(max(x1 - x0, y1 - y0) / FACE_SHARE))
        return cls(round((x0 + x1) / 2 - side / 2), round((y0 + y1) / 2 - side / 2), side, out)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.left + self.side, self.top + self.side)

    def inside(self, width: int, height: int) -> CropBox:
        """The part of the square that lies inside a `width x height` photo."""
        return CropBox(max(self.left, 0), max(self.top, 0), min(self.left + self.side, width),
                       min(self.top + self.side, height))

    def cut(self, image: Image.Image) -> Image.Image:
        """The square of `image`, black where it leaves the photo, resized to `out x out`."""
        canvas = Image.new("RGB", (self.side, self.side), (0, 0, 0))
        box = self.inside(image.width, image.height)
        canvas.paste(image.convert("RGB").crop(box.as_tuple()), (box.left - self.left, box.top - self.top))
        return canvas.resize((self.out, self.out), Image.Resampling.LANCZOS)

    def cut_mask(self, mask: np.ndarray) -> np.ndarray:
        """`bool[out, out]`: a template-size mask seen through the square (False outside the photo)."""
        height, width = mask.shape
        canvas = np.zeros((self.side, self.side), np.uint8)
        box = self.inside(width, height)
        canvas[box.top - self.top : box.bottom - self.top, box.left - self.left : box.right - self.left] = \
            mask[box.top : box.bottom, box.left : box.right] > 0
        return cv2.resize(canvas, (self.out, self.out), interpolation=cv2.INTER_NEAREST) > 0

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Template pixel coordinates -> crop pixel coordinates."""
        return (np.asarray(points, dtype=np.float64) - [self.left, self.top]) * (self.out / self.side)

    def place(self, crop_alpha: np.ndarray, width: int, height: int) -> np.ndarray:
        """`float32[height, width]`: a crop-size alpha put back where the square lies in the photo (0 elsewhere)."""
        full = cv2.resize(crop_alpha.astype(np.float32), (self.side, self.side), interpolation=cv2.INTER_LINEAR)
        alpha = np.zeros((height, width), np.float32)
        box = self.inside(width, height)
        alpha[box.top : box.bottom, box.left : box.right] = \
            full[box.top - self.top : box.bottom - self.top, box.left - self.left : box.right - self.left]
        return np.clip(alpha, 0.0, 1.0)

    def uncut(self, generated: Image.Image, width: int, height: int) -> Image.Image:
        """The generated square at template scale, cut to the part inside the photo (for `paste_back`)."""
        box = self.inside(width, height)
        full = generated.convert("RGB").resize((self.side, self.side), Image.Resampling.LANCZOS)
        return full.crop((box.left - self.left, box.top - self.top, box.right - self.left, box.bottom - self.top))


def _dilate(mask: np.ndarray, side: int) -> np.ndarray:
    if side <= 1:
        return mask.astype(bool)
    return cv2.dilate(mask.astype(np.uint8), np.ones((side, side), np.uint8)) > 0


def grow_face(face: np.ndarray, eye_y: int, grow: float, below_eyes: float = 0.0,
              limit: np.ndarray | None = None) -> np.ndarray:
    """The release's face mask: `face` grown by `grow`·sqrt(area) all around, then by `below_eyes`·sqrt(area) below
    the eye line only, that extra part limited to `limit` ∪ the grown face."""
    face = face.astype(bool)
    area = int(face.sum())
    if area == 0:
        raise FaceNotFoundError("The template face has no face region to repaint; choose another face.")
    grown = _dilate(face, int(math.sqrt(area) * grow))
    if below_eyes <= 0:
        return grown
    wide = _dilate(grown, int(math.sqrt(int(grown.sum())) * below_eyes))
    wide &= grown | (limit.astype(bool) if limit is not None else False)
    row = min(max(int(eye_y), 0), face.shape[0])
    return np.concatenate([grown[:row], wide[row:]], axis=0)


def canny_outside(image: Image.Image, face_region: np.ndarray) -> Image.Image:
    """Canny edges (thresholds 100/200) of `image`, blank inside `face_region`, as the RGB map the ControlNet reads."""
    edges = cv2.Canny(np.asarray(image.convert("RGB"), dtype=np.uint8), *CANNY_THRESHOLDS)
    edges[face_region.astype(bool)] = 0
    return Image.fromarray(np.repeat(edges[:, :, None], 3, axis=2), "RGB")


def paste_alpha(repainted: np.ndarray, out: int) -> np.ndarray:
    """`float32[out, out]`: the repainted region grown and blurred (the release's sizes: 10 px and a kernel of
    2·int(1.8·10)+1 at 512), fully 1 on the region and 0 near the crop's border (no seam at the square's edge)."""
    k = max(1, round(10 * out / 512))
    soft = cv2.GaussianBlur(_dilate(repainted, k).astype(np.float32), (int(k * 1.8) * 2 + 1,) * 2, 0)
    soft = np.maximum(soft, repainted.astype(np.float32))
    border = np.zeros((out, out), np.float32)
    border[2 * k : out - 2 * k, 2 * k : out - 2 * k] = 1.0
    alpha = soft * border
    alpha[alpha < 1.0 / 255] = 0.0  # below one grey level the blend would change nothing but the exactness
    return alpha


@dataclass(frozen=True)
class WarpedFace:
    """The stage-1 face warped onto the template face (crop coordinates): image and its face mask."""

    image: Image.Image
    mask: np.ndarray


def warp_face(source: Image.Image, source_kps: np.ndarray, source_mask: np.ndarray, target_kps: np.ndarray,
              out: int) -> WarpedFace:
    """A least-squares similarity transform of `source` taking its 5 points onto `target_kps` (as the release)."""
    from skimage.transform import SimilarityTransform

    transform = SimilarityTransform.from_estimate(np.asarray(source_kps, np.float64),
                                                  np.asarray(target_kps, np.float64))
    matrix = np.asarray(transform.params[:2], dtype=np.float64)
    pixels = cv2.warpAffine(np.asarray(source.convert("RGB"), dtype=np.uint8), matrix, (out, out),
                            borderValue=(0.0, 0.0, 0.0))
    mask = cv2.warpAffine(source_mask.astype(np.uint8), matrix, (out, out), flags=cv2.INTER_NEAREST,
                          borderValue=(0.0,)) > 0
    return WarpedFace(Image.fromarray(pixels), mask)


@dataclass(frozen=True)
class ReleaseTemplate:
    """Inpainting's inputs for the release recipe (computed before any model loads)."""

    image: Image.Image
    face: Face
    others: tuple[Face, ...]
    crop: SquareCrop
    crop_image: Image.Image
    face_mask: np.ndarray  # bool[out, out], the parser's face region in the crop
    person_mask: np.ndarray  # bool[out, out]
    face_bbox: np.ndarray  # crop coordinates
    face_kps: np.ndarray  # crop coordinates, 5 points

    @property
    def eye_y(self) -> int:
        return int((self.face_kps[0, 1] + self.face_kps[1, 1]) / 2)


def release_template(analyzer: FaceAnalyzer, image: Image.Image, face_index: int, name: str,
                     side: int, analysis: ImageAnalysis | None = None) -> ReleaseTemplate:
    """`analysis` (default: of `image`) says where the faces are: several people in one template paint one face
    after another, each chosen among the faces of the untouched template."""
    analysis = analysis if analysis is not None else analyzer.analyze(image)
    face = analyzer.select_face(analysis, face_index, name)
    parsing = analyzer.parse(image, face)
    crop = SquareCrop.around(face.bbox, side)
    face_mask = crop.cut_mask(parsing.face_mask)
    if not face_mask.any():
        raise FaceNotFoundError(f"Face {face_index} of {name} has no face region the parser could find; choose "
                                "another face or the single recipe with a mask.")
    corners = crop.to_crop(np.asarray(face.bbox, np.float64).reshape(2, 2)).reshape(4)
    return ReleaseTemplate(image.convert("RGB"), face, tuple(f for f in analysis.faces if f is not face), crop,
                           crop.cut(image), face_mask, crop.cut_mask(parsing.person_mask), corners,
                           crop.to_crop(face.kps))


#: One diffusers call: (stage name, pipeline kind "pose" | "inpaint", face strength, inputs) -> image or None (stop).
StageCall = Callable[[str, str, float, dict[str, Any]], Image.Image | None]


@dataclass
class ReleaseOutput:
    crop: Image.Image  # the final crop, out x out
    alpha: np.ndarray  # float32, template size: the paste mask
    stages: list[dict[str, Any]]
    images: dict[str, Image.Image]  # intermediate maps, for tests and debugging


def _steps_for(strength: float, steps: int) -> int:
    """A schedule long enough that `strength` runs at least one step (the release: 50 steps, 1 and 5 of them)."""
    return max(steps, math.ceil(1.0 / strength))


def run_release_stages(template: ReleaseTemplate, call: StageCall, *, steps: int, denoise: float,
                       face_strength: float, analyzer: FaceAnalyzer, pose_estimator: PoseEstimator,
                       keypoints: FaceKeypointModel, hands: HandModel) -> ReleaseOutput | None:
    """Stages 1-6 for one image; `call` runs the pipelines (seeded by the caller). None when stopped."""
    from facestudio.face.openpose_face import draw_face_and_hands
    from facestudio.face.pose import render_openpose

    out = template.crop.out
    crop = template.crop_image
    stages: list[dict[str, Any]] = []
    maps: dict[str, Image.Image] = {}

    # Stage 1: a face of the person in the crop's pose (body + hands).
    hand_points = hands.hands(crop)
    body = pose_estimator.estimate(crop)
    body_map = render_openpose(body, out, out) if body is not None else Image.new("RGB", (out, out))
    maps["stage1_pose"] = draw_face_and_hands(out, out, [], hand_points, canvas=np.asarray(body_map))
    stage1 = call("stage1", "pose", STAGE1_FACE_STRENGTH, {
        "image": maps["stage1_pose"], "controlnet_conditioning_scale": 1.0, "num_inference_steps": steps,
        "width": out, "height": out})
    if stage1 is None:
        return None
    maps["stage1"] = stage1
    stages.append({"stage": "1 pose text-to-image", "steps": steps, "cfg": RELEASE_CFG,
                   "face_strength": STAGE1_FACE_STRENGTH, "controlnet_scales": [1.0],
                   "body_pose": body is not None, "hands": len(hand_points)})

    # Stage 3: warp the stage-1 face onto the template face; draw its face (and hand) keypoints.
    warped = None
    found = analyzer.analyze(stage1).faces
    if found:
        source = found[0]
        warped = warp_face(stage1, source.kps, analyzer.parse(stage1, source).face_mask, template.face_kps, out)
    keypoint_source = warped.image if warped is not None else crop
    face_points = keypoints.points(keypoint_source, template.face_bbox)
    maps["face_keypoints"] = draw_face_and_hands(out, out, [face_points], hand_points)
    stages.append({"stage": "3 warp", "face_keypoints_from": "stage-1 face" if warped is not None
                   else "template face (no face found in stage 1)"})

    # Stage 4: inpaint the original crop with [face keypoints, Canny outside the face].
    mask = grow_face(template.face_mask, template.eye_y, MASK_GROW, MASK_GROW_BELOW_EYES,
                     limit=warped.mask if warped is not None else None)
    canny_blank = grow_face(template.face_mask, template.eye_y, 0.0, CANNY_FACE_GROW)
    maps["edges"] = canny_outside(crop, canny_blank)
    maps["mask"] = Image.fromarray(mask.astype(np.uint8) * 255)
    inpaint_inputs = {"image": crop, "control_image": [maps["face_keypoints"], maps["edges"]],
                      "controlnet_conditioning_scale": list(STAGE2_CONTROL_SCALES), "width": out, "height": out}
    stage2 = call("stage2", "inpaint", face_strength, {
        **inpaint_inputs, "mask_image": maps["mask"], "strength": denoise, "num_inference_steps": steps})
    if stage2 is None:
        return None
    stages.append({"stage": "4 ControlNet inpainting", "steps": steps, "denoise": denoise, "cfg": RELEASE_CFG,
                   "face_strength": face_strength, "controlnet_scales": list(STAGE2_CONTROL_SCALES),
                   "canny_thresholds": list(CANNY_THRESHOLDS), "mask_grow": MASK_GROW,
                   "mask_grow_below_eyes": MASK_GROW_BELOW_EYES})

    # Stage 5a: the drift the pipeline adds outside the person (a near-zero pass) is taken back out.
    correction_steps = _steps_for(CORRECTION_STRENGTH, steps)
    drift_free = call("correction", "inpaint", face_strength, {
        **inpaint_inputs, "mask_image": Image.new("L", (out, out), 0), "strength": CORRECTION_STRENGTH,
        "num_inference_steps": correction_steps})
    if drift_free is None:
        return None
    blur = HUMAN_BLUR * out // 512 // 2 * 2 + 1
    person = template.person_mask.astype(np.float32)
    person = cv2.GaussianBlur(person, (blur, blur), 0) * person
    drift = (np.asarray(crop, np.int16) - np.asarray(drift_free, np.int16)) * (1.0 - person[:, :, None])
    corrected = Image.fromarray(np.clip(np.asarray(stage2, np.int16) + drift.astype(np.int16), 0, 255)
                                .astype(np.uint8))
    stages.append({"stage": "5 drift correction", "strength": CORRECTION_STRENGTH,
                   "num_inference_steps": correction_steps, "cfg": RELEASE_CFG})

    # Stage 5b: refinement at strength 0.1 with both ControlNets at 0.8, on the corrected result.
    refine_mask = grow_face(template.face_mask, template.eye_y, REFINE_GROW)
    refine_points = keypoints.points(corrected, template.face_bbox)
    refine_edges = cv2.Canny(np.asarray(corrected, dtype=np.uint8), *CANNY_THRESHOLDS)
    refine_steps = _steps_for(REFINE_STRENGTH, steps)
    refined = call("refine", "inpaint", face_strength, {
        "image": corrected, "mask_image": Image.fromarray(refine_mask.astype(np.uint8) * 255),
        "control_image": [draw_face_and_hands(out, out, [refine_points], hand_points),
                          Image.fromarray(np.repeat(refine_edges[:, :, None], 3, axis=2), "RGB")],
        "controlnet_conditioning_scale": list(REFINE_CONTROL_SCALES), "strength": REFINE_STRENGTH,
        "num_inference_steps": refine_steps, "width": out, "height": out})
    if refined is None:
        return None
    stages.append({"stage": "5 refinement", "strength": REFINE_STRENGTH, "num_inference_steps": refine_steps,
                   "cfg": RELEASE_CFG, "controlnet_scales": list(REFINE_CONTROL_SCALES)})

    # Stage 6: paste back around what was repainted; other faces are never touched.
    crop_alpha = paste_alpha(mask | refine_mask, out)
    width, height = template.image.size
    alpha = template.crop.place(crop_alpha, width, height)
    for other in template.others:
        x0, y0, x1, y1 = (round(float(v)) for v in other.bbox)
        alpha[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 0.0
    stages.append({"stage": "6 paste back", "grow_px": max(1, round(10 * out / 512))})
    return ReleaseOutput(refined, alpha, stages, maps)
