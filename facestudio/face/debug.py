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
