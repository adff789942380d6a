"""`python -m facestudio evaluate`: adapters side by side on a dataset's held-out photos.

A thin front over `facestudio.training.evaluation`: flags become the held-out split and `EvaluationSettings`, the
engine generates, and this module prints the table (or `--json`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from facestudio.errors import TrainingError


def add_evaluate_command(commands, add_backend_options: Callable[[argparse.ArgumentParser], None]) -> None:
    from facestudio.cli.options import add_device_options
    from facestudio.training.evaluation import DEFAULT_SEEDS

    evaluate = commands.add_parser(
        "evaluate", help="compare FACT adapters on a dataset's held-out photos",
        description="Generate with fixed prompts and seeds for each adapter (through the same engine as "
                    "`generate`) and report side by side how alike the generated faces are to the photos held out "
                    "of training (mean, lowest, highest identity similarity) and, when a CLIP model is available, "
                    "how well the images follow the prompts.")
    evaluate.add_argument("--dataset", required=True, type=Path, metavar="DATASET",
                          help="dataset folder written by `prepare`")
    evaluate.add_argument("--adapter", action="append", required=True, metavar="A",
                          help="FACT adapter (file, registry name, or `default`); repeat to compare several")
    evaluate.add_argument("--prompts", type=Path, metavar="FILE",
                          help="prompts, one per line (blank lines and lines starting with # are skipped); default: "
                               "two fixed portrait prompts")
    evaluate.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, metavar="N",
                          help=f"images per prompt and person, seeds 0 to N-1 (default {DEFAULT_SEEDS})")
    evaluate.add_argument("--holdout", type=int, default=None, metavar="N",
                          help="photos of each person held out, chosen as `train --holdout N` chooses them "
                               "(default: the split an adapter's run folder recorded in holdout.json, else 1 of "
                               "each person with at least 4 photos)")
    evaluate.add_argument("--seed", type=int, default=0, metavar="N",
                          help="the training --seed whose held-out choice to repeat (default 0)")
    evaluate.add_argument("--steps", type=int, default=30, metavar="N", help="denoising steps (default 30)")
    evaluate.add_argument("--size", type=int, default=512, metavar="PX", help="image side (default 512)")
    evaluate.add_argument("--base-model", default=None, metavar="ID|PATH", help="base model (default: the default)")
    evaluate.add_argument("--face-encoder", default=None, metavar="ID|PATH", help="TransFace weights")
    evaluate.add_argument("--clip-model", default=None, metavar="ID|PATH",
                          help="CLIP model of the prompt-following score (default clip-vit-l14; scored only when it "
                               "is on disk: evaluate never downloads it)")
    evaluate.add_argument("--json", action="store_true",
                          help='print [{"adapter", "identity": {"mean", "min", "max"}, "clip", "images", "faces"}]')
    add_device_options(evaluate)
    add_backend_options(evaluate)
    evaluate.set_defaults(handler=run_evaluate)


def read_prompts(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise TrainingError(f"The prompts file {path.name} cannot be read ({err}).", field="prompts") from err
    prompts = tuple(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))
    if not prompts:
        raise TrainingError(f"The prompts file {path.name} has no prompts; write one per line.", field="prompts")
    return prompts


def held_out_images(args: argparse.Namespace, manifest) -> tuple[str, ...]:
    """The split recorded by the run of the first adapter that lies in a run folder, else the `--holdout` rule."""
    from facestudio.training.holdout import choose_holdout, read_split

    known = {item.image for item in manifest.items}
    if args.holdout is None:
        for adapter in args.adapter:
            split = read_split(Path(adapter).parent) if Path(adapter).is_file() else None
            if split is not None and set(split.images) <= known:
                return split.images
    return choose_holdout(manifest.items, args.holdout, args.seed).images


def run_evaluate(args: argparse.Namespace) -> int:
    from facestudio.cli.generate import _engine
    from facestudio.training.dataset import load_manifest
    from facestudio.training.evaluation import (
        DEFAULT_PROMPTS,
        EvaluationSettings,
        evaluate_adapters,
        evaluation_photos,
        format_table,
    )

    if args.seeds < 1:
        raise TrainingError(f"`seeds` must be at least 1; got {args.seeds}.", field="seeds")
    manifest = load_manifest(args.dataset)
    photos = evaluation_photos(manifest, held_out_images(args, manifest))
    settings = EvaluationSettings(prompts=read_prompts(args.prompts) if args.prompts else DEFAULT_PROMPTS,
                                  seeds=args.seeds, steps=args.steps, size=args.size, base_model=args.base_model,
                                  face_encoder=args.face_encoder, clip_model=args.clip_model)
    adapters = [None if a == "default" else a for a in args.adapter]

    def progress(label: str, done: int, total: int) -> None:
        if not args.json:
            print(f"\r{label}: image {done}/{total}", end="", file=sys.stderr, flush=True)

    results = evaluate_adapters(_engine(args), adapters, photos, settings, labels=list(args.adapter),
                                on_image=progress)
    if args.json:
        print(json.dumps([row.to_dict() for row in results], indent=2))
        return 0
    print(file=sys.stderr)
    if not photos.held_out:
        print("warning: the dataset has no held-out photos; scoring against the training photos flatters adapters "
              "trained on them", file=sys.stderr)
    print(format_table(results, photos.held_out))
    return 0
