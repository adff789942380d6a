"""Likeness against prompt: what each face strength buys in identity and costs in prompt-following.

`compare strengths` renders one seed at several FACT strengths; this module turns the images' identity scores and
CLIP scores (`clip_score.py`) into a table, a recommended strength, a grid image and a plot. The recommendation is
the lowest strength whose identity score passes the same-person threshold (more strength than that only costs
prompt-following); when none passes, the strength with the best balance, the largest identity x CLIP product.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont


@dataclass(frozen=True)
class StrengthPoint:
    """One strength of a comparison: its identity score (`None`: no face found), whether that passes the
    same-person threshold, and its CLIP score against the prompt."""

    strength: float
    identity: float | None
    same_person: bool
    clip_score: float
    image: str = ""  # the image's file name, when saved

    def to_dict(self) -> dict[str, Any]:
        return {"strength": self.strength, "identity": self.identity, "same_person": self.same_person,
                "clip_score": round(self.clip_score, 3), "image": self.image}


@dataclass(frozen=True)
class StrengthComparison:
    prompt: str
    seed: int
    threshold: float
    points: tuple[StrengthPoint, ...]
    recommended: float | None
    reason: str
    clip_model: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "seed": self.seed, "identity_threshold": self.threshold,
                "clip_model": self.clip_model, "points": [point.to_dict() for point in self.points],
                "recommended_strength": self.recommended, "reason": self.reason}


def recommend_strength(points: Sequence[StrengthPoint], threshold: float) -> tuple[float | None, str]:
    """(strength, why): the lowest strength that passes `threshold`, else the best identity x CLIP balance."""
    passing = [p for p in points if p.identity is not None and p.identity >= threshold]
    if passing:
        best = min(passing, key=lambda p: p.strength)
        return best.strength, (f"the lowest strength whose identity score passes the same-person threshold "
                               f"{threshold:g}")
    scored = [p for p in points if p.identity is not None]
    if not scored:
        return None, "no face was found in any image"
    best = max(scored, key=lambda p: (max(p.identity or 0.0, 0.0) * p.clip_score, -p.strength))
    return best.strength, (f"no strength passes the same-person threshold {threshold:g}; the best balance of "
                           "identity x CLIP score")


def comparison_grid(images: Sequence[Image.Image], points: Sequence[StrengthPoint], height: int = 256
                    ) -> Image.Image:
    """The images side by side at `height`, each captioned with its strength, identity and CLIP score."""
    caption_height = 34
    tiles = [image.convert("RGB").resize((max(1, round(image.width * height / image.height)), height))
             for image in images]
    grid = Image.new("RGB", (sum(t.width for t in tiles) or 1, height + caption_height), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    left = 0
    for tile, point in zip(tiles, points, strict=True):
        grid.paste(tile, (left, 0))
        draw.text((left + 4, height + 3), f"strength {point.strength:g}", fill="black", font=font)
        draw.text((left + 4, height + 18), f"identity {_value(point.identity)}  CLIP {point.clip_score:.1f}",
                  fill="black", font=font)
        left += tile.width
    return grid


def comparison_plot(comparison: StrengthComparison, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """Identity score against CLIP score, one labelled point per strength, the same-person threshold dashed and the
    recommended strength circled (drawn with PIL: no plotting library needed)."""
    width, height = size
    left, right, top, bottom = 70, 20, 30, 50
    plot = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(plot)
    font = ImageFont.load_default()
    points = [p for p in comparison.points if p.identity is not None]
    xs = [p.clip_score for p in comparison.points] or [0.0]
    ys = [p.identity for p in points if p.identity is not None] + [comparison.threshold]
    x_low, x_high = _span(min(xs), max(xs))
    y_low, y_high = _span(min(ys), max(ys))

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_low) / (x_high - x_low) * (width - left - right),
                height - bottom - (y - y_low) / (y_high - y_low) * (height - top - bottom))

    draw.rectangle((left, top, width - right, height - bottom), outline="black")
    for i in range(5):
        x_value = x_low + (x_high - x_low) * i / 4
        y_value = y_low + (y_high - y_low) * i / 4
        x, _ = at(x_value, y_low)
        _, y = at(x_low, y_value)
        draw.line((x, height - bottom, x, height - bottom + 4), fill="black")
        draw.text((x - 12, height - bottom + 6), f"{x_value:.1f}", fill="black", font=font)
        draw.line((left - 4, y, left, y), fill="black")
        draw.text((left - 40, y - 6), f"{y_value:.2f}", fill="black", font=font)
    draw.text((width // 2 - 80, height - 20), "CLIP score (prompt-following)", fill="black", font=font)
    draw.text((8, 8), "identity score (likeness)", fill="black", font=font)
    _, threshold_y = at(x_low, comparison.threshold)
    for x in range(left, width - right, 12):  # dashed: the same-person threshold
        draw.line((x, threshold_y, min(x + 6, width - right), threshold_y), fill=(200, 0, 0))
    draw.text((width - right - 150, threshold_y - 14), f"same person >= {comparison.threshold:g}", fill=(200, 0, 0),
              font=font)
    ordered = sorted(points, key=lambda p: p.strength)
    for a, b in itertools.pairwise(ordered):
        draw.line((*at(a.clip_score, a.identity or 0.0), *at(b.clip_score, b.identity or 0.0)), fill=(150, 150, 150))
    for point in ordered:
        x, y = at(point.clip_score, point.identity or 0.0)
        draw.ellipse((x - 5, y - 5, x + 5, y + 5), fill=(30, 90, 200))
        if point.strength == comparison.recommended:
            draw.ellipse((x - 10, y - 10, x + 10, y + 10), outline=(0, 150, 0), width=2)
        draw.text((x + 8, y - 14), f"s={point.strength:g}", fill="black", font=font)
    return plot


def _span(low: float, high: float) -> tuple[float, float]:
    margin = max((high - low) * 0.1, 1e-3)
    return low - margin, high + margin


def _value(value: float | None) -> str:
    return "no face" if value is None else f"{value:.3f}"
