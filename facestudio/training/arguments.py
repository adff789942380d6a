"""The `train` flags and how they combine, without importing torch: the command line builds its parser from them
(so `python -m facestudio --help` and `jobs list` start fast) and `train_fact.parse_args` uses the same ones."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from facestudio.config import parse_flag
from facestudio.errors import SettingsError, TrainingError
from facestudio.training.config import LR_SCHEDULERS, MIXED_PRECISION, OPTIMIZERS, TRAINABLE, TrainConfig
from facestudio.training.run import RunFolder


def _on_off(value: str) -> bool:
    try:
        if value.strip():  # an empty value is a mistake on the command line, not "off"
            return parse_flag("the value", value)
    except SettingsError:
        pass
    raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")


def _seed_list(value: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2; got {value!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    return seeds


#: (flag, type, help) of every setting; defaults come from `TrainConfig`. Each maps to the field of the same name.
_SETTINGS: tuple[tuple[str, Any, str], ...] = (
    ("--base-model", str, "base SD1.5 model: registry name, diffusers folder, single file or hub id (default: the "
                          "default base)"),
    ("--init", str, "adapter to start from: default (the base model's released adapter), a registry name, a file, "
                    "or scratch"),
    ("--face-encoder", str, "TransFace weights (default: the release's)"),
    ("--steps", int, "optimizer steps"),
    ("--lr", float, "peak learning rate (AdamW)"),
    ("--batch-size", int, "images per step and process"),
    ("--gradient-accumulation", int, "micro-batches per optimizer step"),
    ("--resolution", int, "training image side in pixels (multiple of 64)"),
    ("--fair-weight", float, "weight of FAIR in the loss"),
    ("--drop-prob", float, "probability of conditioning a sample on the 'no face' tokens"),
    ("--shuffle-prob", float, "probability of conditioning on another photo of the same person"),
    ("--curriculum", _on_off, "on: ramp the shuffle probability up from 0 (see --curriculum-start/-end)"),
    ("--curriculum-start", float, "fraction of the steps where the shuffle ramp starts"),
    ("--curriculum-end", float, "fraction of the steps where the shuffle ramp reaches --shuffle-prob"),
    ("--trainable", str, f"what trains: {' or '.join(TRAINABLE)}"),
    ("--lr-scheduler", str, f"learning-rate schedule: {', '.join(LR_SCHEDULERS)}"),
    ("--warmup-steps", int, "learning-rate warm-up steps (capped to a tenth of --steps)"),
    ("--weight-decay", float, "AdamW weight decay"),
    ("--max-grad-norm", float, "gradient clipping norm (0: off)"),
    ("--checkpoint-every", int, "save a checkpoint every N steps (and at the end)"),
    ("--keep-checkpoints", int, "keep the last K checkpoints"),
    ("--sample-every", int, "render sample images every N steps (0: never)"),
    ("--sample-seeds", _seed_list, "seeds of the sample images, comma-separated"),
    ("--sample-steps", int, "denoising steps of the sample images"),
    ("--sample-strength", float, "face strength of the sample images"),
    ("--seed", int, "seed of everything random in the run"),
    ("--mixed-precision", str, f"{', '.join(MIXED_PRECISION)} (auto: bf16 or fp16 on a GPU, no on the CPU)"),
    ("--gradient-checkpointing", _on_off, "on: recompute UNet activations in the backward pass (less memory)"),
    ("--device", str, "auto (a GPU if there is one), cpu, mps, cuda or cuda:N (that GPU)"),
    ("--optimizer", str, "adamw, or adamw8bit (bitsandbytes' 8-bit AdamW on CUDA or the CPU: a quarter of the "
                         "optimizer memory; needs bitsandbytes installed)"),
    ("--fused-backward", _on_off, "on: step each parameter inside the backward pass and free its gradient at once "
                                  "(up to 1 GB less memory, same updates; clipping per parameter; needs "
                                  "--gradient-accumulation 1, one process, no fp16)"),
    ("--holdout", int, "photos of each person kept out of training to evaluate the adapter on (0: none; "
                       "unset: 1 of each person with at least 4 photos)"),
)


_TYPE_METAVARS = {int: "N", float: "X", _on_off: "on|off", _seed_list: "S,S,..."}
_METAVARS = {"--trainable": "|".join(TRAINABLE), "--lr-scheduler": "NAME", "--mixed-precision": "|".join(MIXED_PRECISION),
             "--init": "default|ID|PATH|scratch", "--base-model": "ID|PATH", "--face-encoder": "ID|PATH",
             "--device": "auto|cpu|cuda|cuda:N", "--optimizer": "|".join(OPTIMIZERS)}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The `train` flags, shared by `python -m facestudio train` and `python -m facestudio.training.train_fact`."""
    defaults = TrainConfig(dataset="-")
    parser.add_argument("dataset", nargs="?", metavar="DATASET", help="dataset folder written by `prepare`")
    parser.add_argument("--out", type=Path, metavar="RUN", help="new folder for the run (checkpoints, samples, "
                                                                   "metrics, adapter.safetensors)")
    parser.add_argument("--resume", type=Path, metavar="RUN",
                        help="continue RUN from its last checkpoint, with its own settings")
    for flag, kind, text in _SETTINGS:
        name = flag[2:].replace("-", "_")
        default = getattr(defaults, name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else (
            ("on" if default else "off") if isinstance(default, bool) else default)
        if default is None:
            shown = "auto"
        parser.add_argument(flag, type=kind, default=None, metavar=_METAVARS.get(flag, _TYPE_METAVARS.get(kind, "NAME")),
                            help=f"{text} (default {shown})")
    parser.add_argument("--cpu", action="store_const", const="cpu", dest="device", help="same as --device cpu")


@dataclass(frozen=True)
class TrainArgs:
    """What to do: start `run` with `config`, or resume `run` (then `config` is None)."""

    run: RunFolder
    config: TrainConfig | None


def _given_settings(args: argparse.Namespace) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig)
            if f.name != "dataset" and getattr(args, f.name, None) is not None}


def config_from_namespace(args: argparse.Namespace) -> TrainConfig:
    """The settings of a new run from the flags (defaults for those not given)."""
    if not args.dataset:
        raise TrainingError("give the DATASET folder written by `python -m facestudio prepare`.")
    return TrainConfig(dataset=str(Path(args.dataset)), **_given_settings(args)).check()


def train_args_from_namespace(args: argparse.Namespace) -> TrainArgs:
    """Check how the flags combine (diffusers' `parse_args` convention) and build the config."""
    given = _given_settings(args)
    if args.resume is not None:
        if args.dataset or args.out or given:
            extra = ", ".join(["DATASET"] * bool(args.dataset) + ["--out"] * bool(args.out)
                              + [f"--{name.replace('_', '-')}" for name in given])
            raise TrainingError(f"--resume continues a run with its own settings; drop {extra}.")
        run = RunFolder(args.resume)
        if not run.exists():
            raise TrainingError(f"{args.resume} is not a training run (it has no config.json); start one with "
                                "`python -m facestudio train DATASET --out RUN`.")
        return TrainArgs(run, None)
    if not args.dataset or args.out is None:
        raise TrainingError("give a DATASET and --out RUN to start a run, or --resume RUN to continue one.")
    return TrainArgs(RunFolder(args.out), config_from_namespace(args))
