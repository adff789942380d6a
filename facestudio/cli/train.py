"""The command line's training commands: `prepare` (photos → a training dataset) and `train` (FAIR training).

A thin front: flags become `PrepareSettings`, `facestudio.training.prepare_dataset` does the work, and this module
prints one line per photo and a summary (or the report as JSON). Errors reach `cli.main`, which prints one
sentence and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path


def add_training_commands(commands, add_backend_options: Callable[[argparse.ArgumentParser], None]) -> None:
    from facestudio.training import PAD_MODES, PrepareSettings

    defaults = PrepareSettings()
    # "resolve": `prepare` redefines --min-face-px (the smallest face kept) over the backend options' detector one.
    prepare = commands.add_parser(
        "prepare", help="turn photos of people into a training dataset", conflict_handler="resolve",
        description="Screen photos (a folder, one sub-folder per person, or a .zip of it) and write a training "
                    "dataset: square crops around the face, face and head masks, FACT reference crops, captions, "
                    "manifest.json and report.json. Rejected photos are listed with their reason.")
    prepare.add_argument("photos", type=Path, metavar="PHOTOS",
                         help="folder or .zip of photos; sub-folders are identities (a flat folder is one identity)")
    prepare.add_argument("--out", required=True, type=Path, metavar="DATASET",
                         help="dataset folder: new, empty, or a previous dataset (replaced)")
    prepare.add_argument("--class-word", default=defaults.class_word, metavar="WORD",
                         help=f"caption 'a photo of a WORD' unless a .txt beside the photo says otherwise "
                              f"(default {defaults.class_word})")
    add_backend_options(prepare)
    prepare.add_argument("--min-face-px", type=int, default=defaults.min_face_px, metavar="N",
                         help=f"reject faces narrower than N pixels in the photo (default {defaults.min_face_px})")
    prepare.add_argument("--min-sharpness", type=float, default=defaults.min_sharpness, metavar="X",
                         help=f"reject faces whose sharpness (variance of the Laplacian at 112 px) is below X "
                              f"(default {defaults.min_sharpness:g}; 0 keeps all)")
    prepare.add_argument("--face-fraction", type=float, default=defaults.face_fraction, metavar="F",
                         help=f"face width as a fraction of the crop width (default {defaults.face_fraction})")
    prepare.add_argument("--size", type=int, default=defaults.size, metavar="PX",
                         help=f"side of the square training images and masks (default {defaults.size})")
    prepare.add_argument("--pad", choices=tuple(PAD_MODES), default=defaults.pad,
                         help=f"how a crop is filled beyond the photo's edge (default {defaults.pad})")
    prepare.add_argument("--overwrite", action="store_true",
                         help="write into a non-empty folder that is not a FaceStudio dataset (other files are kept)")
    prepare.add_argument("--json", action="store_true", help="print the report as JSON")
    prepare.set_defaults(handler=run_prepare)

    from facestudio.training.arguments import add_train_arguments

    train = commands.add_parser(
        "train", help="train the FACT adapter on a prepared dataset (FAIR)",
        description="Fine-tune (or train from scratch) the FACT adapter on a dataset written by `prepare`. The run "
                    "folder gets metrics.jsonl, checkpoints/, samples/, status.json and, at the end, "
                    "adapter.safetensors (use it with `generate --adapter`). Ctrl+C stops at the next step with a "
                    "checkpoint; `train --resume RUN` continues exactly where it stopped.")
    add_train_arguments(train)
    train.add_argument("--job", action="store_true",
                       help="queue the run as a background job (see `jobs`) instead of training in this terminal")
    train.add_argument("--name", metavar="NAME", help="name of the job (with --job; default: the dataset's name)")
    train.add_argument("--processes", type=int, default=None, metavar="N",
                       help="with --job: train on N processes through torchrun (one per GPU; --cpu: N CPU "
                            "processes). In a terminal, start `torchrun --nproc_per_node N -m "
                            "facestudio.training.train_fact ...` yourself")
    train.set_defaults(handler=run_train)


def run_prepare(args: argparse.Namespace) -> int:
    from facestudio.training import PrepareSettings, prepare_dataset
    from facestudio.training.dataset import preparation_analyzer

    settings = PrepareSettings(class_word=args.class_word, min_face_px=args.min_face_px,
                               min_sharpness=args.min_sharpness, face_fraction=args.face_fraction, size=args.size,
                               pad=args.pad, overwrite=args.overwrite)
    analyzer = preparation_analyzer(args.backend, settings, args.settings.insightface_root)
    try:
        report = prepare_dataset(args.photos, args.out, analyzer, settings,
                                 on_item=None if args.json else _print_item, max_pixels=args.settings.max_pixels,
                                 max_zip_bytes=args.settings.max_zip_bytes)
    finally:
        analyzer.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_summary(report)
    if not report.kept:
        print(f"error: none of the {len(report.items)} photo(s) in {args.photos} could be used (reasons above); "
              "nothing was written.", file=sys.stderr)
        return 1
    return 0


def _print_item(item, done: int, total: int) -> None:
    counter = f"[{done}/{total}]"
    if item.kept:
        print(f"{counter} kept      {item.source} -> {item.entry.image}  (face {item.face_px:.0f} px, "
              f"sharpness {item.sharpness:.0f})", flush=True)
    else:
        print(f"{counter} rejected  {item.source}: {item.reason}: {item.detail}", flush=True)


def _print_summary(report) -> None:
    for warning in report.warnings:
        print(f"warning: {warning}")
    where = f"; dataset in {report.out}" if report.written else ""
    print(f"{len(report.items)} photo(s): {len(report.kept)} kept, {len(report.rejected)} rejected{where}")


def run_train(args: argparse.Namespace) -> int:
    from facestudio.training.arguments import train_args_from_namespace
    from facestudio.training.run import RunState
    from facestudio.training.train_fact import model_manager, run_training

    if args.job:
        return _submit_job(args)
    if args.name:
        print("error: --name names a background job; add --job.", file=sys.stderr)
        return 1
    if args.processes is not None:
        print("error: --processes sets a background job's processes; add --job, or start this run with "
              "`torchrun --nproc_per_node N -m facestudio.training.train_fact ...`.", file=sys.stderr)
        return 1
    train_args = train_args_from_namespace(args)
    if train_args.config is None:
        train_args.run.clear_cancel()  # the user asks to continue: an old cancel request no longer applies
    status = run_training(train_args, on_progress=_ProgressLine(), manager=model_manager(args.settings))
    print(file=sys.stderr)
    if status.state == RunState.DONE:
        print(f"done: {train_args.run.adapter_path}  (python -m facestudio generate --adapter "
              f"{train_args.run.adapter_path} ...)")
        _print_likeness(train_args.run.root)
        return 0
    print(f"{status.state} at step {status.step}/{status.total}; continue with "
          f"`python -m facestudio train --resume {train_args.run.root}`")
    return 0 if status.state == RunState.CANCELLED else 1


def _print_likeness(run_root: Path) -> None:
    """The run's evaluation (RUN/evaluation.json, when it held photos out), as the Train tab shows it."""
    from facestudio.training.evaluation import EVALUATION_FILE, likeness_before_after, read_evaluation

    evaluation = read_evaluation(run_root)
    if evaluation is None:
        return
    before, after = ("-" if value is None else f"{value:.3f}" for value in likeness_before_after(evaluation))
    print(f"likeness on held-out photos: before {before} -> after {after} ({run_root / EVALUATION_FILE})")


def _submit_job(args: argparse.Namespace) -> int:
    from facestudio.jobs import JobStore
    from facestudio.training.arguments import config_from_namespace

    if args.resume is not None or args.out is not None:
        print("error: a --job lives in FACESTUDIO_HOME/jobs: drop --out, and resume jobs with "
              "`python -m facestudio jobs resume ID`.", file=sys.stderr)
        return 1
    config = config_from_namespace(args)
    job = JobStore(args.settings.home).submit_training(config, args.name or Path(config.dataset).resolve().name,
                                                       processes=1 if args.processes is None else args.processes)
    print(f"queued job {job.id}; it runs when the studio or `python -m facestudio jobs run` works the queue; "
          f"follow it with `python -m facestudio jobs show {job.id}`")
    return 0


class _ProgressLine:
    """One self-rewriting status line on stderr while training in the foreground."""

    def __init__(self):
        self._last = 0.0

    def __call__(self, status) -> None:
        import time

        from facestudio.training.run import RunStage

        now = time.monotonic()
        if now - self._last < 0.5 and status.step < status.total:
            return
        self._last = now
        eta = "" if status.eta_seconds is None else f"  ETA {status.eta_seconds / 60:.1f} min"
        loss = "" if status.loss is None else f"  loss {status.loss:.4f}"
        unit = "photo" if status.stage == RunStage.PREPARING else "step"
        print(f"\r{status.state} {unit} {status.step}/{status.total}{loss}{eta}   ", end="", file=sys.stderr,
              flush=True)
