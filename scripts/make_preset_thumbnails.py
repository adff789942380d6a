"""Draw the style presets' gallery thumbnails: one 256x256 "style card" per built-in preset
(`facestudio/data/presets/*.json`).

Why drawn cards and not sample renders: the studio ships without model weights and is developed without a GPU, so
there is nothing to render samples with. Each card is a deliberately designed picture instead: a background whose
palette and texture evoke the style (venetian-blind light for film noir, a neon grid for cyberpunk, pastel blotches
for watercolour, ...) with the same stylised head-and-shoulders silhouette on top, so the Generate tab's gallery reads
as "a portrait in this style". Replace them with real sample renders once weights are available (a
`--from-renders DIR` option would be the place for that; it is not needed yet).

The cards are plain numpy + Pillow, drawn from a seeded RNG (`zlib.crc32` of the preset key), carry no text (the
gallery captions them with the preset's name) and are saved without metadata, so a run writes the same bytes every
time. Every style is a row of `STYLES`, keyed by preset key; a preset without a row still gets a card in a colour
derived from its key.

    python scripts/make_preset_thumbnails.py            # (re)draw facestudio/data/assets/presets/<key>.png
    python scripts/make_preset_thumbnails.py --check    # exit 1 listing missing or outdated cards; writes nothing

A preset shows its card once its JSON names it: `"thumbnail": "presets/<key>.png"` (a path inside the assets
folder). The defaults are the checkout's package data, which this script maintains.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 256
#: Shapes are drawn this many times larger and box-downsampled, for smooth edges.
SCALE = 4
#: Where the cards go, inside the assets folder (and so the prefix of a preset's `thumbnail`).
THUMBNAIL_FOLDER = "presets"
#: `--check` accepts a channel that is off by this much (float rounding across numpy builds), nothing more.
TOLERANCE = 2
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The package data in this checkout (the built-in presets and their cards), not an installed copy.
DATA = REPO_ROOT / "facestudio" / "data"

# The silhouette, in card pixels; the same on every card.
HEAD = (90.0, 50.0, 166.0, 148.0)
#: The body's right half as cubic Bezier segments (start, control, control, end) from the neck down past the
#: card's bottom edge; the left half is its mirror image about x = 128.
BODY_RIGHT = (
    ((144.0, 126.0), (145.0, 150.0), (150.0, 164.0), (172.0, 171.0)),  # neck flaring into the trapezius
    ((172.0, 171.0), (202.0, 178.0), (224.0, 186.0), (228.0, 216.0)),  # the shoulder's round
    ((228.0, 216.0), (230.0, 236.0), (231.0, 250.0), (232.0, 262.0)),  # the arm, down off the card
)

Array = np.ndarray
Box = tuple[float, float, float, float]
Painter = Callable[[np.random.Generator, list[Array]], Array]


@dataclass(frozen=True)
class CardStyle:
    """How one preset's card is drawn.

    `background` and `figure` name painters (`PAINTERS`) that get the matching palette (hex colours); the figure's
    picture is shown through the silhouette with `figure_alpha` (`figure_blend` "multiply" tints like a wash),
    `soft_edge` blurs its edge, `rims` add light on its sides (colour, horizontal offset), `outline` draws a line
    round it, `accents` are small details (`ACCENTS`), `overlays` are drawn over everything (`OVERLAYS`).
    """

    background: str
    palette: tuple[str, ...]
    figure: str = "vertical"
    figure_palette: tuple[str, ...] = ("#2a2a2a", "#151515")
    figure_alpha: float = 1.0
    figure_blend: str = "normal"
    soft_edge: float = 0.0
    rims: tuple[tuple[str, int], ...] = ()
    outline: str | None = None
    accents: tuple[str, ...] = ()
    overlays: tuple[str, ...] = ()
    vignette: float = 0.0
    grain: float = 0.0


# ----------------------------------------------------------------------------------------------------- helpers


def _rgb(color: str) -> Array:
    """'#rrggbb' as a float RGB triple in 0..1."""
    value = color.lstrip("#")
    return np.array([int(value[i:i + 2], 16) for i in (0, 2, 4)], dtype=np.float32) / 255.0


def _hsv(h: float, s: float, v: float) -> str:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def _grid(size: int = SIZE) -> tuple[Array, Array]:
    """Pixel-centre coordinates (y, x) in card pixels, for a `size` x `size` raster."""
    step = SIZE / size
    coords = (np.arange(size, dtype=np.float32) + 0.5) * step
    return np.meshgrid(coords, coords, indexing="ij")


def _ramp(t: Array, colors: Sequence[Array]) -> Array:
    """Colours evenly spaced along t in 0..1 (clipped), interpolated per channel."""
    t = np.clip(t, 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(colors))
    table = np.stack(colors)
    return np.stack([np.interp(t, stops, table[:, c]) for c in range(3)], axis=-1).astype(np.float32)


def _mix(base: Array, top: Array, alpha: Array | float) -> Array:
    """`top` over `base` with coverage `alpha` (an HxW map or a number)."""
    a = alpha[..., None] if isinstance(alpha, np.ndarray) else alpha
    return base + (top - base) * a


def _smoothstep(edge0: float, edge1: float, x: Array) -> Array:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blur(values: Array, sigma: float) -> Array:
    """Separable Gaussian blur of an HxW map (edges repeated)."""
    if sigma <= 0:
        return values
    radius = max(1, round(3 * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    out = values.astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=axis)
        out = windows @ kernel
    return out.astype(np.float32)


def _smooth_noise(rng: np.random.Generator, cells: int) -> Array:
    """Low-frequency noise in roughly 0..1: a `cells` x `cells` random grid scaled up smoothly."""
    small = Image.fromarray(rng.random((cells, cells)).astype(np.float32), mode="F")
    return np.asarray(small.resize((SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float32)


def _scaled(box: Box, s: float = SCALE) -> tuple[float, float, float, float]:
    return (box[0] * s, box[1] * s, box[2] * s, box[3] * s)


def _mask(draw: Callable[[ImageDraw.ImageDraw], None], blur: float = 0.0) -> Array:
    """A 0..1 coverage map of what `draw` paints (in white, at SCALE x card size), antialiased by downsampling."""
    canvas = Image.new("L", (SIZE * SCALE, SIZE * SCALE), 0)
    draw(ImageDraw.Draw(canvas))
    small = canvas.resize((SIZE, SIZE), Image.Resampling.BOX)
    return _blur(np.asarray(small, dtype=np.float32) / 255.0, blur)


def _body_outline() -> list[tuple[float, float]]:
    """The neck-and-shoulders outline in card pixels, left side up and right side down."""
    right = []
    for p0, p1, p2, p3 in BODY_RIGHT:
        for t in np.linspace(0.0, 1.0, 24, endpoint=False):
            u = 1.0 - t
            right.append(tuple(u ** 3 * np.array(p0) + 3 * u * u * t * np.array(p1) + 3 * u * t * t * np.array(p2)
                               + t ** 3 * np.array(p3)))
    right.append(BODY_RIGHT[-1][-1])
    left = [(SIZE - x, y) for x, y in reversed(right)]
    return [(float(x), float(y)) for x, y in left + right]


def _figure_mask() -> Array:
    def draw(d: ImageDraw.ImageDraw) -> None:
        d.polygon([(x * SCALE, y * SCALE) for x, y in _body_outline()], fill=255)
        d.ellipse(_scaled(HEAD), fill=255)

    return _mask(draw)


def _shift(values: Array, dx: int, dy: int = 0) -> Array:
    """`values` moved by (dx, dy) pixels, zero-filled."""
    out = np.zeros_like(values)
    h, w = values.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        values[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _lines_mask(lines: Sequence[tuple[float, float, float, float]], width: float) -> Array:
    """Coverage of straight strokes given in card pixels."""
    def draw(d: ImageDraw.ImageDraw) -> None:
        for x0, y0, x1, y1 in lines:
            d.line([(x0 * SCALE, y0 * SCALE), (x1 * SCALE, y1 * SCALE)], fill=255, width=max(1, round(width * SCALE)))

    return _mask(draw)


def _hatch(rng: np.random.Generator, angle: float, spacing: float, width: float, gaps: float = 0.35) -> Array:
    """Hand-drawn-looking parallel strokes over the whole card: jittered, broken into dashes of random length."""
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    centre = np.array([SIZE / 2, SIZE / 2])
    lines = []
    half = SIZE * 0.75
    for offset in np.arange(-half, half, spacing):
        base = centre + normal * (offset + rng.uniform(-spacing * 0.25, spacing * 0.25))
        t = -half
        while t < half:
            length = rng.uniform(14, 60)
            if rng.random() > gaps:
                tilt = rng.uniform(-0.04, 0.04)
                start = base + direction * t
                end = base + direction * (t + length) + normal * tilt * length
                lines.append((start[0], start[1], end[0], end[1]))
            t += length + rng.uniform(2, 10)
    return _lines_mask(lines, width)


def _disc(cx: float, cy: float, r: float, blur: float = 0.0) -> Array:
    return _mask(lambda d: d.ellipse(_scaled((cx - r, cy - r, cx + r, cy + r)), fill=255), blur)


# ---------------------------------------------------------------------------------------------------- painters


def paint_vertical(rng: np.random.Generator, colors: list[Array]) -> Array:
    """A plain top-to-bottom gradient through the palette."""
    yy, _ = _grid()
    return _ramp(yy / SIZE, colors)


def paint_noir(rng: np.random.Generator, colors: list[Array]) -> Array:
    """Dark grey wall, lighter toward the upper left (the window); the blinds' light comes as an overlay."""
    yy, xx = _grid()
    distance = np.hypot(xx - 40, yy - 20) / (SIZE * 1.25)
    return _ramp(distance, colors)


def paint_neon_grid(rng: np.random.Generator, colors: list[Array]) -> Array:
    """Night sky glowing magenta toward a horizon, a dark skyline, and a cyan perspective grid on the floor."""
    top, glow, cyan, floor = colors
    horizon = 150.0
    yy, _ = _grid()
    sky = _ramp(yy / horizon, [top, top * 0.6 + glow * 0.4, glow])
    img = np.where((yy < horizon)[..., None], sky, _ramp((yy - horizon) / (SIZE - horizon), [floor * 1.6, floor]))
    # Skyline: blocks of random height, a shade lighter than the night, with a few lit windows.
    x = 0.0
    blocks = []
    while x < SIZE:
        width = rng.uniform(14, 34)
        blocks.append((x, horizon - rng.uniform(18, 70), x + width, horizon))
        x += width + rng.uniform(0, 4)
    skyline = _mask(lambda d: [d.rectangle(_scaled(b), fill=255) for b in blocks])
    img = _mix(img, top * 0.55 + floor * 0.45, skyline)
    windows = []
    for b in blocks:
        for _ in range(int(rng.integers(2, 6))):
            wx, wy = rng.uniform(b[0] + 2, b[2] - 5), rng.uniform(b[1] + 3, horizon - 6)
            windows.append((wx, wy, wx + 2.5, wy + 3.5))
    lit = _mask(lambda d: [d.rectangle(_scaled(w), fill=255) for w in windows])
    img = _mix(img, cyan * 0.5 + glow * 0.2 + 0.3, lit * 0.75)
    # Floor grid: lines converging on the vanishing point, rows closer together toward the horizon.
    vanish = SIZE / 2
    lines = [(vanish + k * 6, horizon, vanish + k * 70, SIZE + 40) for k in range(-9, 10)]
    lines += [(0, horizon + (SIZE - horizon) * (i / 7) ** 2, SIZE, horizon + (SIZE - horizon) * (i / 7) ** 2)
              for i in range(1, 8)]
    grid = _lines_mask(lines, 1.2)
    img = img + cyan * (grid + _blur(grid, 2.5) * 1.2)[..., None] * 0.8
    # The horizon line glows.
    band = np.exp(-(((yy - horizon) / 2.5) ** 2))
    img = img + glow * band[..., None] * 0.9
    return img


def paint_blotches(rng: np.random.Generator, colors: list[Array]) -> Array:
    """Off-white paper with soft, irregular pastel pools that darken at their edges, like dried watercolour."""
    paper, *pigments = colors
    yy, xx = _grid()
    img = np.ones((SIZE, SIZE, 3), dtype=np.float32) * paper
    img = img * (0.97 + 0.03 * _smooth_noise(rng, 24))[..., None]
    for i in range(11):
        cx, cy = rng.uniform(-10, SIZE + 10), rng.uniform(-10, SIZE + 10)
        radius = rng.uniform(38, 85)
        wobble = _smooth_noise(rng, 6)
        d = np.hypot(xx - cx, yy - cy) / (radius * (0.75 + 0.5 * wobble))
        body = _smoothstep(1.0, 0.8, d)
        edge = np.exp(-(((d - 0.93) / 0.06) ** 2)) * (d < 1.05)
        alpha = body * 0.32 + edge * 0.22
        pigment = pigments[i % len(pigments)]
        img = img * (1.0 - alpha[..., None] * (1.0 - pigment))
    return img


def paint_paper_hatch(rng: np.random.Generator, colors: list[Array]) -> Array:
    """Cream paper with graphite hatching: a dense patch of shading behind the head and a few loose strokes."""
    paper, graphite = colors
    yy, xx = _grid()
    img = np.ones((SIZE, SIZE, 3), dtype=np.float32) * paper
    img = img * (0.975 + 0.025 * _smooth_noise(rng, 40))[..., None]
    behind = _smoothstep(95, 20, np.hypot((xx - 70) * 0.8, yy - 110))
    corner = _smoothstep(70, 10, np.hypot(xx - 225, yy - 35))
    strokes = _hatch(rng, -0.9, 5.0, 0.7) * (behind * 0.55 + corner * 0.35)
    strokes += _hatch(rng, 0.6, 6.5, 0.6) * behind * 0.3
    return img * (1.0 - np.clip(strokes, 0, 1)[..., None] * (1.0 - graphite))


def paint_dabs(rng: np.random.Generator, colors: list[Array]) -> Array:
    """Short, thick brush dabs in the palette over a warm underpainting, each with a lighter impasto ridge."""
    light, mid, dark, *accents = colors
    yy, xx = _grid()
    under = _ramp(np.hypot(xx - 70, yy - 60) / (SIZE * 1.1), [light, mid, dark])
    base = Image.fromarray((np.clip(under, 0, 1) * 255).astype(np.uint8)).resize((SIZE * SCALE, SIZE * SCALE),
                                                                                 Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(base)
    for _ in range(1500):
        x, y = rng.uniform(-8, SIZE + 8), rng.uniform(-8, SIZE + 8)
        length, thick = rng.uniform(12, 26), rng.uniform(5, 9)
        angle = 0.7 * np.sin(x / 41.0) + 0.5 * np.cos(y / 53.0) + rng.uniform(-0.25, 0.25)
        color = under[int(np.clip(y, 0, SIZE - 1)), int(np.clip(x, 0, SIZE - 1))]
        if accents and rng.random() < 0.2:
            color = color * 0.7 + accents[int(rng.integers(len(accents)))] * 0.3
        color = np.clip(color * rng.uniform(0.9, 1.08), 0, 1)
        along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
        ts = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        points = [(np.array([x, y]) + along * np.cos(t) * length / 2 + across * np.sin(t) * thick / 2) * SCALE
                  for t in ts]
        draw.polygon([tuple(p) for p in points], fill=tuple(int(c * 255) for c in color))
        ridge = np.clip(color * 1.1 + 0.03, 0, 1)
        start = (np.array([x, y]) - along * length * 0.3 - across * thick * 0.18) * SCALE
        end = (np.array([x, y]) + along * length * 0.3 - across * thick * 0.18) * SCALE
        draw.line([tuple(start), tuple(end)], fill=tuple(int(c * 255) for c in ridge), width=2 * SCALE)
    small = base.resize((SIZE, SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def paint_sunburst(rng: np.random.Generator, colors: list[Array]) -> Array:
    """Rays fanning out from below the card in alternating 1970s oranges and browns, faded toward cream."""
    *rays, cream = colors
    yy, xx = _grid(SIZE * SCALE)
    angle = np.arctan2(yy - 300, xx - SIZE / 2)
    count = 22
    index = np.floor((angle / (2 * np.pi) + 1.0) * count).astype(np.int64) % len(rays)
    table = np.stack(rays)
    big = table[index]
    img = np.stack([big[..., c].reshape(SIZE, SCALE, SIZE, SCALE).mean(axis=(1, 3)) for c in range(3)], axis=-1)
    ys, xs = _grid()
    fade = _smoothstep(300, 60, np.hypot(xs - SIZE / 2, ys - 300)) * 0.35
    return _mix(img, np.broadcast_to(cream, img.shape), fade).astype(np.float32)


def paint_starfield(rng: np.random.Generator, colors: list[Array]) -> Array:
    """Deep space with stars of every brightness and the rim of a blue planet rising on the right."""
    top, bottom, ocean, land, air = colors
    yy, xx = _grid()
    img = _ramp(yy / SIZE, [top, bottom])
    stars = np.zeros((SIZE, SIZE), dtype=np.float32)
    ys, xs = rng.integers(0, SIZE, 260), rng.integers(0, SIZE, 260)
    stars[ys, xs] = rng.uniform(0.25, 1.0, 260) ** 2
    stars = np.maximum(stars, _blur(stars, 0.6) * 2.5)
    for _ in range(6):
        sx, sy = rng.uniform(10, SIZE - 10), rng.uniform(10, 170)
        stars = np.maximum(stars, _disc(sx, sy, 1.6, blur=1.0) * 1.6)
    img = img + np.clip(stars, 0, 1)[..., None] * (1.0 - img)
    cx, cy, r = 215.0, 430.0, 265.0
    d = np.hypot(xx - cx, yy - cy)
    planet = _disc(cx, cy, r)
    swirl = _smooth_noise(rng, 10)
    surface = _mix(np.broadcast_to(ocean, img.shape), np.broadcast_to(land, img.shape), _smoothstep(0.55, 0.7, swirl))
    lit = _smoothstep(-40, 50, (cx - xx) * 0.4 + (cy - yy) * 0.9 - r * 0.85)
    surface = surface * (0.35 + 0.75 * lit)[..., None]
    img = _mix(img, surface, planet)
    halo = np.exp(-(((d - r) / 7.0) ** 2)) + 0.45 * np.exp(-np.clip(d - r, 0, None) / 14.0) * (d > r)
    return img + air * (halo * (0.4 + 0.6 * lit))[..., None]


def paint_beach(rng: np.random.Generator, colors: list[Array]) -> Array:
    """Sky, sea and sand in bands, a bright sun with a halo and a few lines of surf."""
    sky_top, sky_low, sea_far, sea_near, sand, sun = colors
    yy, xx = _grid()
    horizon, shore = 150.0, 204.0
    img = _ramp(yy / horizon, [sky_top, sky_low])
    sea = _ramp((yy - horizon) / (shore - horizon), [sea_far, sea_near])
    img = np.where((yy >= horizon)[..., None], sea, img)
    sand_tex = sand * (0.94 + 0.08 * _smooth_noise(rng, 48))[..., None]
    beach = _smoothstep(shore - 1, shore + 1, yy + 3 * np.sin(xx / 19.0))
    img = _mix(img, sand_tex, beach)
    foam = _smoothstep(3.5, 0, np.abs(yy - (shore - 1 + 3 * np.sin(xx / 19.0))))
    waves = []
    for _ in range(16):
        wy = rng.uniform(horizon + 6, shore - 6)
        wx = rng.uniform(-10, SIZE)
        waves.append((wx, wy, wx + rng.uniform(12, 40) * (1 + (wy - horizon) / 40), wy))
    surf = _lines_mask(waves, 1.1) * 0.55 + foam * 0.8
    img = _mix(img, np.ones_like(img), np.clip(surf, 0, 1))
    sx, sy = 206.0, 50.0
    glow = np.exp(-np.hypot(xx - sx, yy - sy) / 34.0) * (yy < horizon)
    img = img + (sun * 0.6 + 0.4)[None, None, :] * glow[..., None] * 0.55
    return _mix(img, np.broadcast_to(sun, img.shape), _disc(sx, sy, 21))


def paint_shield(rng: np.random.Generator, colors: list[Array]) -> Array:
    """Deep heraldic blue with a gold-edged shield behind the figure and a scatter of gold motes."""
    centre, edge, field, gold = colors
    yy, xx = _grid()
    img = _ramp(np.hypot(xx - SIZE / 2, yy - 100) / (SIZE * 0.8), [centre, edge])
    outline = [(40, 22), (216, 22), (216, 130), (200, 186), (168, 228), (128, 250), (88, 228), (56, 186), (40, 130)]

    def shield(inset: float) -> Array:
        cx, cy = 128.0, 130.0
        points = [((x - cx) * (1 - inset) + cx, (y - cy) * (1 - inset) + cy) for x, y in outline]
        return _mask(lambda d: d.polygon([(x * SCALE, y * SCALE) for x, y in points], fill=255))

    outer, inner, core = shield(0.0), shield(0.05), shield(0.08)
    img = _mix(img, gold * 0.9, outer)
    img = _mix(img, field, inner)
    img = _mix(img, gold * 0.8, inner - core)
    img = _mix(img, field * 0.85 + edge * 0.15, core)
    motes = np.zeros((SIZE, SIZE), dtype=np.float32)
    ys, xs = rng.integers(0, SIZE, 70), rng.integers(0, SIZE, 70)
    motes[ys, xs] = rng.uniform(0.3, 1.0, 70)
    motes = np.clip(np.maximum(motes, _blur(motes, 0.8) * 3), 0, 1) * (1 - outer)
    return _mix(img, np.broadcast_to(gold, img.shape), motes)


def paint_office(rng: np.random.Generator, colors: list[Array]) -> Array:
    """A clean grey-blue backdrop, lighter at the top, with the soft blur of a window on one side."""
    top, bottom, window = colors
    yy, xx = _grid()
    img = _ramp(yy / SIZE + (xx / SIZE - 0.5) * 0.15, [top, bottom])
    panes = _mask(lambda d: [d.rectangle(_scaled((x, 18, x + 34, 150)), fill=255) for x in (8, 48)], blur=9.0)
    return _mix(img, np.broadcast_to(window, img.shape), panes * 0.55)


def paint_key_light(rng: np.random.Generator, colors: list[Array]) -> Array:
    """A mottled studio backdrop lit by a soft key light behind the subject, falling off to the corners."""
    bright, mid, dark = colors
    yy, xx = _grid()
    d = np.hypot((xx - 108) * 0.9, yy - 96) / 190.0
    mottle = (_smooth_noise(rng, 7) - 0.5) * 0.08
    return _ramp(d + mottle, [bright, mid, dark])


def paint_color_blocks(rng: np.random.Generator, colors: list[Array]) -> Array:
    """Flat, bold blocks of colour: a tall slab, a big disc, a bar, as on a magazine spread."""
    ground, slab, disc, bar = colors
    img = np.ones((SIZE, SIZE, 3), dtype=np.float32) * ground
    img = _mix(img, slab, _mask(lambda d: d.polygon([(0, 0), (120 * SCALE, 0), (84 * SCALE, SIZE * SCALE),
                                                     (0, SIZE * SCALE)], fill=255)))
    img = _mix(img, disc, _disc(206, 58, 50))
    return _mix(img, bar, _mask(lambda d: d.rectangle(_scaled((150, 196, SIZE, 214)), fill=255)))


def paint_teal_orange(rng: np.random.Generator, colors: list[Array]) -> Array:
    """Graded teal shadows, a warm practical light on the right, and out-of-focus bokeh discs."""
    teal, deep, orange = colors
    yy, xx = _grid()
    img = _ramp(xx / SIZE + (yy / SIZE - 0.5) * 0.2, [teal, deep, deep * 0.7 + orange * 0.3])
    glow = np.exp(-np.hypot(xx - 236, yy - 96) / 62.0)
    img = img + orange * glow[..., None] * 0.75
    for _ in range(11):
        bx, by = rng.uniform(0, SIZE), rng.uniform(30, 200)
        warm = bx > SIZE * 0.55
        disc = _disc(bx, by, rng.uniform(6, 17), blur=1.4)
        img = img + (orange if warm else teal * 1.8)[None, None, :] * disc[..., None] * rng.uniform(0.15, 0.35)
    return img


PAINTERS: dict[str, Painter] = {
    "vertical": paint_vertical,
    "noir": paint_noir,
    "neon_grid": paint_neon_grid,
    "blotches": paint_blotches,
    "paper_hatch": paint_paper_hatch,
    "dabs": paint_dabs,
    "sunburst": paint_sunburst,
    "starfield": paint_starfield,
    "beach": paint_beach,
    "shield": paint_shield,
    "office": paint_office,
    "key_light": paint_key_light,
    "color_blocks": paint_color_blocks,
    "teal_orange": paint_teal_orange,
}


# ------------------------------------------------------------------------------------------- accents, overlays


def accent_visor(img: Array, figure: Array, rng: np.random.Generator) -> Array:
    """A helmet visor: dark glass with a gold reflection and a highlight."""
    yy, xx = _grid()
    visor = _mask(lambda d: d.rounded_rectangle(_scaled((100, 72, 156, 124)), radius=20 * SCALE, fill=255))
    glass = _ramp((yy - 72) / 52 + (xx - 100) / 200, [_rgb("#f2c14e"), _rgb("#8a5a1c"), _rgb("#1b1410")])
    img = _mix(img, glass, visor)
    shine = _mask(lambda d: d.ellipse(_scaled((108, 78, 124, 88)), fill=255), blur=0.8)
    img = _mix(img, np.ones_like(img), shine * 0.7)
    ring = _mask(lambda d: d.ellipse(_scaled((85, 45, 171, 153)), outline=255, width=3 * SCALE))
    return _mix(img, np.broadcast_to(_rgb("#9aa4b1"), img.shape), ring * 0.9)


def accent_collar(img: Array, figure: Array, rng: np.random.Generator) -> Array:
    """A white shirt collar and a dark red tie where the neck meets the jacket."""
    shirt = _mask(lambda d: d.polygon([(x * SCALE, y * SCALE) for x, y in
                                       [(106, 164), (150, 164), (140, 196), (128, 216), (116, 196)]], fill=255))
    img = _mix(img, np.broadcast_to(_rgb("#f4f6f8"), img.shape), shirt)
    tie = _mask(lambda d: d.polygon([(x * SCALE, y * SCALE) for x, y in
                                     [(123, 178), (133, 178), (136, 208), (128, 218), (120, 208)]], fill=255))
    return _mix(img, np.broadcast_to(_rgb("#8c1f2f"), img.shape), tie)


def accent_helm(img: Array, figure: Array, rng: np.random.Generator) -> Array:
    """A knight's helm: an eye slit, a breathing line, and a gold crest ridge."""
    slit = _mask(lambda d: d.rounded_rectangle(_scaled((98, 90, 158, 98)), radius=3 * SCALE, fill=255))
    nose = _mask(lambda d: d.rectangle(_scaled((126, 98, 130, 136)), fill=255))
    img = _mix(img, np.broadcast_to(_rgb("#10131c"), img.shape), np.clip(slit + nose * 0.7, 0, 1))
    crest = _mask(lambda d: d.line([(128 * SCALE, 51 * SCALE), (128 * SCALE, 88 * SCALE)], fill=255, width=4 * SCALE))
    return _mix(img, np.broadcast_to(_rgb("#d8a93a"), img.shape), crest)


def accent_sketch(img: Array, figure: Array, rng: np.random.Generator) -> Array:
    """The figure as a pencil drawing: a few loose outline passes and hatching on its shadow side."""
    graphite = _rgb("#3d3d40")

    inner = np.asarray(Image.fromarray((figure * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(3)),
                       dtype=np.float32) / 255.0
    edge = np.clip(figure - inner, 0, 1)
    lines = np.zeros_like(edge)
    for strength in (0.9, 0.55, 0.4):
        dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
        lines = np.maximum(lines, _shift(edge, dx, dy) * strength)
    hx0, hy0, hx1, hy1 = HEAD
    guides = _lines_mask([((hx0 + hx1) / 2, hy0 + 6, (hx0 + hx1) / 2 + 2, hy1 - 4),
                          (hx0 + 6, (hy0 + hy1) / 2, hx1 - 6, (hy0 + hy1) / 2 + 1)], 0.6)
    lines = np.maximum(lines, guides * 0.3)
    _, xx = _grid()
    shade = _hatch(rng, -0.9, 3.6, 0.6, gaps=0.15) * figure * _smoothstep(118, 170, xx) * 0.75
    strokes = np.clip(lines * 0.85 + shade, 0, 1)
    return img * (1.0 - strokes[..., None] * (1.0 - graphite))


ACCENTS: dict[str, Callable[[Array, Array, np.random.Generator], Array]] = {
    "visor": accent_visor,
    "collar": accent_collar,
    "helm": accent_helm,
    "sketch": accent_sketch,
}


def overlay_blinds(img: Array, figure: Array, rng: np.random.Generator) -> Array:
    """Hard light through venetian blinds: slanted bright bands, fainter where they fall on the figure."""
    yy, xx = _grid()
    phase = (yy + xx * 0.42) / 22.0
    bands = _smoothstep(0.05, -0.05, np.sin(phase * 2 * np.pi) - 0.15)
    window = _smoothstep(330, 120, xx * 0.5 + yy)
    strength = bands * window * (0.75 - 0.5 * figure)
    return _mix(img, np.broadcast_to(_rgb("#e9e9e6"), img.shape), strength)


def overlay_letterbox(img: Array, figure: Array, rng: np.random.Generator) -> Array:
    """Black bars at the top and bottom, as on a widescreen frame."""
    yy, _ = _grid()
    bars = (yy < 30) | (yy > SIZE - 30)
    return np.where(bars[..., None], np.float32(0.02), img)


OVERLAYS: dict[str, Callable[[Array, Array, np.random.Generator], Array]] = {
    "blinds": overlay_blinds,
    "letterbox": overlay_letterbox,
}


# ------------------------------------------------------------------------------------------------------- styles


STYLES: dict[str, CardStyle] = {
    "film-noir": CardStyle(
        background="noir", palette=("#4a4a48", "#262626", "#0b0b0b"),
        figure_palette=("#0a0a0a", "#050505"), rims=(("#bdbdbd", -2),), overlays=("blinds",), vignette=0.45,
        grain=0.012),
    "cyberpunk": CardStyle(
        background="neon_grid", palette=("#1a0633", "#ff2bd6", "#19f0ff", "#0a0414"),
        figure_palette=("#1c0b33", "#0d0519"), rims=(("#19f0ff", -2), ("#ff2bd6", 2))),
    "watercolor": CardStyle(
        background="blotches", palette=("#fbf7ef", "#f6b8c8", "#a8d8ea", "#fcd9a0", "#c7b8ea", "#b8e0c2"),
        figure_palette=("#7f9fd0", "#6c5aa6"), figure_alpha=0.8, figure_blend="multiply", soft_edge=1.2),
    "pencil-sketch": CardStyle(
        background="paper_hatch", palette=("#f4f0e6", "#55555a"), figure_alpha=0.0, accents=("sketch",),
        vignette=0.08),
    "oil-painting": CardStyle(
        background="dabs", palette=("#e9c27a", "#b86f2e", "#4a2816", "#7d8b4a", "#d9a05b", "#8c3b24"),
        figure="dabs", figure_palette=("#6b2f22", "#3e1a12", "#1d0c08", "#7a4a2a", "#2f3a22"),
        soft_edge=0.6, vignette=0.3),
    "vintage-70s": CardStyle(
        background="sunburst", palette=("#e8702a", "#8b4a1f", "#f0a830", "#c4521c", "#f4e4c1"),
        figure_palette=("#4a2a14", "#2e1a0c"), outline="#f4e4c1", vignette=0.35, grain=0.015),
    "astronaut": CardStyle(
        background="starfield", palette=("#05060f", "#0d1636", "#1f6fb8", "#3f8f5a", "#7fd0ff"),
        figure_palette=("#f4f6f8", "#aeb7c2"), rims=(("#7fd0ff", 2),), accents=("visor",)),
    "beach-summer": CardStyle(
        background="beach", palette=("#3aa7e8", "#bfe8fb", "#1a8fb5", "#39c9c4", "#f2d7a0", "#ffd84a"),
        figure_palette=("#f08a5d", "#d8613a"), rims=(("#fff2b0", 2),)),
    "fantasy-knight": CardStyle(
        background="shield", palette=("#23438c", "#060f2a", "#1a3370", "#e0b44c"),
        figure_palette=("#e3e8f0", "#6f7a8e"), outline="#d8a93a", accents=("helm",), vignette=0.3),
    "business-headshot": CardStyle(
        background="office", palette=("#e9eef4", "#98a8bb", "#ffffff"),
        figure_palette=("#2c3d5a", "#1a2538"), rims=(("#dfe7f0", -2),), accents=("collar",)),
    "studio-portrait": CardStyle(
        background="key_light", palette=("#d6d3cf", "#8e8b88", "#3a3938"),
        figure_palette=("#2c2b2a", "#1a1919"), rims=(("#f5efe6", -2),), vignette=0.25),
    "fashion-editorial": CardStyle(
        background="color_blocks", palette=("#1f3fd6", "#ff3864", "#ffd000", "#f5f5f0"),
        figure_palette=("#121212", "#050505"), rims=(("#ffd000", 2),)),
    "cinematic": CardStyle(
        background="teal_orange", palette=("#1b5a66", "#0a1c22", "#ff8a3d"),
        figure_palette=("#0c171b", "#070d10"), rims=(("#ff9a4d", 2), ("#2d8c9a", -1)), overlays=("letterbox",),
        vignette=0.35, grain=0.012),
}


def style_for(key: str) -> CardStyle:
    """The key's row of `STYLES`, or a calm two-tone card in a hue of the key's own (for a preset without a row)."""
    if key in STYLES:
        return STYLES[key]
    hue = (zlib.crc32(key.encode("utf-8")) % 360) / 360.0
    return CardStyle(
        background="key_light", palette=(_hsv(hue, 0.18, 0.95), _hsv(hue, 0.4, 0.72), _hsv(hue + 0.06, 0.6, 0.38)),
        figure_palette=(_hsv(hue, 0.45, 0.28), _hsv(hue, 0.5, 0.16)), rims=((_hsv(hue, 0.15, 1.0), -2),),
        vignette=0.2)


# --------------------------------------------------------------------------------------------------------- card


def draw_card(key: str, style: CardStyle | None = None) -> Image.Image:
    """The 256x256 RGB card for preset `key` (the same pixels on every call)."""
    style = style or style_for(key)
    seed = zlib.crc32(key.encode("utf-8"))
    rng = np.random.default_rng([seed, 0])
    img = PAINTERS[style.background](rng, [_rgb(c) for c in style.palette])

    figure = _figure_mask()
    coverage = _blur(figure, style.soft_edge) * style.figure_alpha
    if style.figure_alpha > 0:
        look = PAINTERS[style.figure](np.random.default_rng([seed, 1]), [_rgb(c) for c in style.figure_palette])
        if style.figure_blend == "multiply":
            img = img * (1.0 - coverage[..., None] * (1.0 - look))
            edge = np.clip(figure - _blur(figure, 3.0), 0, 1) * 1.6
            img = img * (1.0 - (edge * 0.5)[..., None] * (1.0 - look * 0.7))
        else:
            img = _mix(img, look, coverage)
    if style.outline:
        grown = np.asarray(Image.fromarray((figure * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(5)),
                           dtype=np.float32) / 255.0
        img = _mix(img, np.broadcast_to(_rgb(style.outline), img.shape), np.clip(grown - figure, 0, 1))
    for color, dx in style.rims:
        rim = _blur(np.clip(figure - _shift(figure, dx * 2, 1), 0, 1), 1.2) * figure
        img = img + _rgb(color) * (rim * 1.1)[..., None]

    extras = np.random.default_rng([seed, 2])
    for name in style.accents:
        img = ACCENTS[name](img, figure, extras)
    for name in style.overlays:
        img = OVERLAYS[name](img, figure, extras)
    if style.vignette:
        yy, xx = _grid()
        d = np.hypot(xx - SIZE / 2, yy - SIZE / 2) / (SIZE * 0.72)
        img = img * (1.0 - style.vignette * _smoothstep(0.55, 1.0, d))[..., None]
    if style.grain:
        img = img + (extras.standard_normal((SIZE, SIZE)).astype(np.float32) * style.grain)[..., None]
    pixels = np.clip(np.rint(np.clip(img, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def save_card(image: Image.Image, path: Path) -> None:
    """PNG without metadata, optimised, so the bytes depend only on the pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)


def same_picture(path: Path, image: Image.Image) -> bool:
    """Whether the file at `path` holds `image` (pixels compared, within TOLERANCE, not bytes)."""
    try:
        with Image.open(path) as existing:
            if existing.size != image.size:
                return False
            current = np.asarray(existing.convert("RGB"), dtype=np.int16)
    except (OSError, ValueError):
        return False
    return int(np.abs(current - np.asarray(image, dtype=np.int16)).max()) <= TOLERANCE


def thumbnail_path(assets: Path, key: str) -> Path:
    return assets / THUMBNAIL_FOLDER / f"{key}.png"


def preset_keys(presets: Path) -> list[str]:
    return sorted(path.stem for path in presets.glob("*.json"))


def _unnamed(presets: Path, key: str) -> bool:
    """Whether the preset's JSON names no thumbnail at all (its card is drawn, but the gallery would not show it)."""
    try:
        data = json.loads((presets / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and not data.get("thumbnail")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", type=Path, default=DATA / "presets", help="folder of preset JSON files")
    parser.add_argument("--assets", type=Path, default=DATA / "assets",
                        help=f"assets folder; cards go to its {THUMBNAIL_FOLDER}/ folder")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing presets whose card is missing or differs")
    args = parser.parse_args(argv)

    keys = preset_keys(args.presets)
    if not keys:
        print(f"no presets in {args.presets}", file=sys.stderr)
        return 1
    stale, written = [], []
    for key in keys:
        path = thumbnail_path(args.assets, key)
        card = draw_card(key)
        if same_picture(path, card):
            continue
        if args.check:
            stale.append(f"{key}: {path} is {'outdated' if path.exists() else 'missing'}")
        else:
            save_card(card, path)
            written.append(str(path))
    for key in keys:
        if _unnamed(args.presets, key):
            print(f"note: {key}.json does not name its card; add \"thumbnail\": \"{THUMBNAIL_FOLDER}/{key}.png\"",
                  file=sys.stderr)
    if args.check:
        if stale:
            print("preset thumbnails to redraw (run scripts/make_preset_thumbnails.py):\n  " + "\n  ".join(stale))
            return 1
        print(f"{len(keys)} preset thumbnails are up to date")
        return 0
    print(f"drew {len(written)} preset thumbnails, {len(keys) - len(written)} already up to date")
    for path in written:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
