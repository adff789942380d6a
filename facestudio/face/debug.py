"""Overlay pictures of what analysis found: parsing colours, boxes, landmarks and face numbers.

People check a detector faster by looking than by reading coordinates; `analyze --save-debug DIR` writes these.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from facestudio.face.parsing import FaceParsing
from facestudio.face.types import Face

# One colour per landmark in template order: eyes green/blue, nose red, mouth corners yellow/magenta.
KEYPOINT_COLORS = ((0, 255, 0), (0, 128, 255), (255, 0, 0), (255, 255, 0), (255, 0, 255))


def draw_analysis(image: Image.Image, faces: list[Face], parsings: list[FaceParsing] | None = None,
                  alpha: float = 0.45) -> Image.Image:
    """A copy of `image` with parsing colours blended in, and each face's box, landmarks and index drawn on top."""
    canvas = np.asarray(image).astype(np.float32)
    for parsing in parsings or []:
        painted = parsing.labels > 0
        canvas[painted] = (1 - alpha) * canvas[painted] + alpha * parsing.color_map()[painted]
    canvas = np.ascontiguousarray(canvas.clip(0, 255).astype(np.uint8))
    thickness = max(1, round(max(image.size) / 500))
    for index, face in enumerate(faces):
        x0, y0, x1, y1 = (round(v) for v in face.bbox)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), (0, 255, 0), thickness)
        radius = max(2, round(face.eye_distance / 20))
        for point, color in zip(face.kps, KEYPOINT_COLORS, strict=True):
            cv2.circle(canvas, (round(point[0]), round(point[1])), radius, color, -1)
        label = f"{index} ({face.score:.2f})"
        scale = max(0.4, thickness * 0.5)
        cv2.putText(canvas, label, (x0, max(0, y0 - 4 * thickness)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0),
                    thickness, cv2.LINE_AA)
    return Image.fromarray(canvas)


def draw_faces(image: Image.Image, boxes, chosen: int | None = None) -> Image.Image:
    """A copy of `image` with each face's box (`x0, y0, x1, y1`, in face order) and its number only (the plain view
    a person picks a face on): the chosen face in green, the others in white, numbers readable in a thumbnail."""
    canvas = np.ascontiguousarray(np.asarray(image).copy())
    thickness = max(2, round(max(image.size) / 300))
    for index, box in enumerate(boxes):
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        color = (0, 220, 0) if index == chosen else (255, 255, 255)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), (0, 0, 0), thickness + 2)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), color, thickness)
        scale = max(0.8, min(4.0, (x1 - x0) / 60))
        label = str(index)
        (width, height), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(0, y0 - height - base - 2 * thickness)
        cv2.rectangle(canvas, (x0, top), (x0 + width + 2 * thickness, top + height + base + thickness), color, -1)
        cv2.putText(canvas, label, (x0 + thickness, top + height + thickness // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), thickness, cv2.LINE_AA)
    return Image.fromarray(canvas)


def face_at(boxes, x: float, y: float) -> int | None:
    """The number of the face a click at (x, y) picks, given the faces' boxes (`x0, y0, x1, y1` each, in their
    order): the smallest box holding the point, else the box whose centre is nearest if the click is within one box
    width of it; None for a click far from every face."""
    boxes = [tuple(float(v) for v in box) for box in boxes]
    holding = [((x1 - x0) * (y1 - y0), i) for i, (x0, y0, x1, y1) in enumerate(boxes) if x0 <= x <= x1 and y0 <= y <= y1]
    if holding:
        return min(holding)[1]
    best = None
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        distance = float(np.hypot((x0 + x1) / 2 - x, (y0 + y1) / 2 - y))
        if distance <= x1 - x0 and (best is None or distance < best[0]):
            best = (distance, index)
    return None if best is None else best[1]
