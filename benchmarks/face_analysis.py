"""Milliseconds per photo for each face-analysis stage on the shared test photos, with the offline backend.

Stages: load (decode + EXIF + RGB), detect (BlazeFace over the photo and its tiles), mesh (478 landmarks per
face), parse (regions and person mask), embed (identity descriptor). The goal on a 2-core CPU is under 100 ms
for detect + mesh + parse on a 1-megapixel photo (scaled by size above 1 MP); the table prints our time against that goal, and the whole-photo-only
detector (no tiles, which misses faces under ~1/15 of the photo) against the tiled one.

    python benchmarks/face_analysis.py [--faces DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from facestudio.face import FaceAnalyzer, load_image
from facestudio.face.image import analysis_view

GOAL_MS_PER_MP = 100.0


def timed(function, repeats: int) -> tuple[float, object]:
    result = function()  # warm-up (graph start-up, lazy loads)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), result


def main(argv: list[str] | None = None) -> int:
    default_faces = Path(__file__).resolve().parents[2] / "shared" / "faces"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=Path(os.environ.get("FACESTUDIO_SHARED", default_faces.parent))
                        / "faces" if "FACESTUDIO_SHARED" in os.environ else default_faces)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    analyzer = FaceAnalyzer(backend="mediapipe", embedder="dlib")
    detector = analyzer.detector
    rows = []
    for path in sorted(args.faces.glob("*.jpg")) + sorted(args.faces.glob("*.png")):
        load_ms, image = timed(lambda p=path: load_image(p), args.repeats)
        pixels = analysis_view(image).pixels
        detect_ms, candidates = timed(lambda px=pixels: detector.propose(px), args.repeats)
        global_ms, _ = timed(lambda px=pixels: detector.propose(px, tiled=False), args.repeats)
        mesh_ms, faces = timed(lambda px=pixels, c=candidates: [detector.refine(px, x) for x in c], args.repeats)
        face = max(faces, key=lambda f: f.area)
        parse_ms, _ = timed(lambda im=image, f=face: analyzer.parse(im, f), args.repeats)
        embed_ms, _ = timed(lambda im=image, f=face: analyzer.embed(im, f), args.repeats)
        megapixels = image.width * image.height / 1e6
        rows.append((path.name, megapixels, load_ms, detect_ms, global_ms, mesh_ms, parse_ms, embed_ms))

    header = (f"{'photo':<18}{'MP':>6}{'load':>8}{'detect':>8}{'(whole)':>9}{'mesh':>7}{'parse':>7}{'embed':>7}"
              f"{'d+m+p':>8}{'per MP':>8}{'vs goal':>9}{'tiles x':>9}")
    print(header)
    print("-" * len(header))
    for name, mp, load, det, whole, mesh, parse, embed in rows:
        core = det + mesh + parse
        per_mp = core / mp
        print(f"{name:<18}{mp:>6.2f}{load:>8.1f}{det:>8.1f}{whole:>9.1f}{mesh:>7.1f}{parse:>7.1f}{embed:>7.1f}"
              f"{core:>8.1f}{per_mp:>8.1f}{core / (GOAL_MS_PER_MP * max(1.0, mp)):>8.2f}x{det / whole:>8.2f}x")
    ratios = [(r[3] + r[5] + r[6]) / (GOAL_MS_PER_MP * max(1.0, r[1])) for r in rows]
    print(f"\nworst detect+mesh+parse = {max(ratios):.2f}x the goal of {GOAL_MS_PER_MP:.0f} ms per (1-megapixel) "
          f"photo; median {np.median(ratios):.2f}x. Milliseconds, median of {args.repeats} runs; 'tiles x' = tiled "
          "detection / whole-photo-only detection.")
    analyzer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
