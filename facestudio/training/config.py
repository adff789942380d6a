"""`TrainConfig`: every setting of a FAIR training run, with the defaults FaceStudio chose where FACT.md §7 says
*unknown* (the README's training section gives the reasons).

A run's config is written once into RUN/config.json; `--resume` reads it back, so a resumed run cannot silently
change its settings. Nothing here imports torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from facestudio.errors import TrainingError
from facestudio.training.run import RunFolder, RunStage, RunState, RunStatus

CONFIG_FORMAT = "facestudio-train"
CONFIG_VERSION = 1
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
TRAINABLE = ("adapter", "face-layers")
LR_SCHEDULERS = ("constant_with_warmup", "cosine", "linear", "constant")
#: `optimizer`: torch's AdamW (fused or foreach where the device has it), or bitsandbytes' 8-bit AdamW (CUDA, CPU).
OPTIMIZERS = ("adamw", "adamw8bit")
#: bitsandbytes is optional: once installed, diffusers imports it (about 2 s) in every process that loads a model.
INSTALL_8BIT = "pip install bitsandbytes==0.50.2"
#: `device`: `auto` (accelerate's choice: a CUDA GPU, or Apple's MPS, else the CPU), `cpu`, `mps`, `cuda`, `cuda:N`.
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(?::[0-9]+)?")
#: `init` values that are not a registry name or a path.
INIT_DEFAULT, INIT_SCRATCH = "default", "scratch"
#: Upper bounds, so that no front can queue a run that would never end or never fit in memory (the README's training
#: section lists them): optimizer steps, the training image side, images per step, and everything counted in steps.
MAX_STEPS = 1_000_000
MAX_RESOLUTION = 1024
MAX_BATCH_SIZE = 64
MAX_GRADIENT_ACCUMULATION = 64
MAX_SAMPLE_STEPS = 200
MAX_KEEP_CHECKPOINTS = 100
#: The learning-rate warm-up takes at most this fraction of the run's steps: a 40-step quick test with the default 50
#: warm-up steps would otherwise end before its learning rate reached `lr`.
MAX_WARMUP_FRACTION = 0.1
MAX_HOLDOUT = 100


def eight_bit_available() -> bool:
    """Whether `optimizer` adamw8bit can run here (bitsandbytes installed; not imported to find out)."""
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Args:
        dataset (`str`): folder written by `python -m facestudio prepare`; with `photos`, where the run writes it.
        photos (`str`, *optional*): a folder of photos (sub-folders are people) that the run itself prepares into
            `dataset` as its first stage, with the default `PrepareSettings` (a studio job starts this way). None:
            `dataset` is already prepared.
        face_backend (`str`, *optional*, defaults to `"auto"`): the face detector that prepares `photos`.
        base_model (`str`, *optional*): registry name, diffusers folder, single file or hub id; the default base.
        init (`str`, *optional*, defaults to `"default"`): the adapter to start from: `default` (the released
            adapter of the base model), a registry name, a file, or `scratch` (a fresh adapter, gates at 0).
        face_encoder (`str`, *optional*): TransFace weights; the release's by default.
        steps (`int`): optimizer steps.
        lr (`float`): peak learning rate of AdamW.
        batch_size (`int`): images per step per process (before gradient accumulation).
        gradient_accumulation (`int`): micro-batches per optimizer step.
        resolution (`int`): side of the training images (multiple of 8).
        fair_weight (`float`): weight of FAIR in the loss (FACT's file names suggest 0.01).
        drop_prob (`float`): probability that a sample is conditioned on the "no face" tokens.
        shuffle_prob (`float`): probability that a sample is conditioned on another photo of the same person.
        curriculum (`bool`): ramp the shuffle probability from 0 (between `curriculum_start` and `curriculum_end`,
            fractions of `steps`) instead of using it from the first step.
        trainable (`str`): `adapter` (resampler + face layers) or `face-layers` (the resampler stays frozen).
        lr_scheduler, warmup_steps, weight_decay, max_grad_norm: the optimisation schedule; the warm-up actually
            used is `effective_warmup_steps` (at most `MAX_WARMUP_FRACTION` of `steps`).
        checkpoint_every, keep_checkpoints: a checkpoint every N steps (and at the end), the last K kept.
        sample_every, sample_seeds, sample_steps, sample_strength: sample images at fixed seeds every N steps.
        seed (`int`): everything random in the run (data order, noise, timesteps, drop, shuffle) follows from it.
        mixed_precision (`str`): `auto` (bf16 where the GPU has it, else fp16; `no` on the CPU), `no`, `fp16`, `bf16`.
        gradient_checkpointing (`bool`): recompute the frozen UNet's activations in the backward pass (less memory).
        device (`str`): `auto`, `cpu`, `mps`, `cuda` or `cuda:N` (that GPU: the trainer makes it the current CUDA
            device before accelerate picks "cuda"; `CUDA_VISIBLE_DEVICES` is left alone). The studio passes its own.
        optimizer (`str`): `adamw` or `adamw8bit` (bitsandbytes, optional; CUDA or the CPU: a quarter of the
            optimizer memory).
        fused_backward (`bool`): step each parameter inside the backward pass as soon as its gradient is complete
            and free that gradient (`fused_backward.py`): up to 0.95 GB less peak memory over FACT's 255.5M fp32
            parameters, the same updates; `max_grad_norm` then caps each parameter's gradient norm, and it needs
            `gradient_accumulation` 1, one process and no fp16.
        holdout (`int`, *optional*): photos of each person kept out of training to evaluate the adapter on
            (`holdout.py`); None: 1 of each person with at least 4 photos; 0: none. Runs written before this
            setting existed read as 0 (they trained on every photo).
    """

    dataset: str
    photos: str | None = None
    face_backend: str = "auto"
    base_model: str | None = None
    init: str = INIT_DEFAULT
    face_encoder: str | None = None
    steps: int = 1000
    lr: float = 1e-4
    batch_size: int = 4
    gradient_accumulation: int = 1
    resolution: int = 512
    fair_weight: float = 0.01
    drop_prob: float = 0.05
    shuffle_prob: float = 0.5
    curriculum: bool = True
    curriculum_start: float = 0.2
    curriculum_end: float = 0.5
    trainable: str = "adapter"
    lr_scheduler: str = "constant_with_warmup"
    warmup_steps: int = 50
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    sample_every: int = 250
    sample_seeds: tuple[int, ...] = (0, 1)
    sample_steps: int = 20
    sample_strength: float = 0.5
    seed: int = 0
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = True
    device: str = "auto"
    optimizer: str = "adamw"
    fused_backward: bool = False
    holdout: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "sample_seeds", tuple(int(s) for s in self.sample_seeds))

    def check(self) -> TrainConfig:
        """Raise `TrainingError` naming the first setting that is out of range (`err.field`); return self."""
        def need(ok: bool, name: str, value, expected: str) -> None:
            if not ok:
                raise TrainingError(f"`{name}` must be {expected}; got {value!r}.", field=name)

        def finite(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        def whole(value, low: int, high: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

        need(whole(self.steps, 1, MAX_STEPS), "steps", self.steps, f"a whole number from 1 to {MAX_STEPS:,}")
        need(finite(self.lr) and 0 < self.lr < 1, "lr", self.lr, "a number between 0 and 1")
        need(whole(self.batch_size, 1, MAX_BATCH_SIZE), "batch_size", self.batch_size,
             f"a whole number from 1 to {MAX_BATCH_SIZE}")
        need(whole(self.gradient_accumulation, 1, MAX_GRADIENT_ACCUMULATION), "gradient_accumulation",
             self.gradient_accumulation, f"a whole number from 1 to {MAX_GRADIENT_ACCUMULATION}")
        need(whole(self.resolution, 64, MAX_RESOLUTION) and self.resolution % 64 == 0, "resolution", self.resolution,
             f"a multiple of 64 from 64 to {MAX_RESOLUTION}")
        need(finite(self.fair_weight) and self.fair_weight >= 0, "fair_weight", self.fair_weight, ">= 0")
        for name in ("drop_prob", "shuffle_prob"):
            value = getattr(self, name)
            need(finite(value) and 0 <= value <= 1, name, value, "between 0 and 1")
        need(finite(self.curriculum_start) and finite(self.curriculum_end)
             and 0 <= self.curriculum_start <= self.curriculum_end <= 1, "curriculum_end", self.curriculum_end,
             f"between the curriculum start ({self.curriculum_start}) and 1")
        need(self.trainable in TRAINABLE, "trainable", self.trainable, f"one of {', '.join(TRAINABLE)}")
        need(self.lr_scheduler in LR_SCHEDULERS, "lr_scheduler", self.lr_scheduler,
             f"one of {', '.join(LR_SCHEDULERS)}")
        need(whole(self.warmup_steps, 0, MAX_STEPS), "warmup_steps", self.warmup_steps,
             f"a whole number from 0 to {MAX_STEPS:,}")
        need(finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
        need(finite(self.max_grad_norm) and self.max_grad_norm >= 0, "max_grad_norm", self.max_grad_norm,
             ">= 0 (0 turns clipping off)")
        need(whole(self.checkpoint_every, 1, MAX_STEPS), "checkpoint_every", self.checkpoint_every,
             f"a whole number from 1 to {MAX_STEPS:,}")
        need(whole(self.keep_checkpoints, 1, MAX_KEEP_CHECKPOINTS), "keep_checkpoints", self.keep_checkpoints,
             f"a whole number from 1 to {MAX_KEEP_CHECKPOINTS}")
        need(whole(self.sample_every, 0, MAX_STEPS), "sample_every", self.sample_every,
             f"a whole number from 0 to {MAX_STEPS:,} (0 turns samples off)")
        need(whole(self.sample_steps, 1, MAX_SAMPLE_STEPS), "sample_steps", self.sample_steps,
             f"a whole number from 1 to {MAX_SAMPLE_STEPS}")
        need(finite(self.sample_strength) and self.sample_strength >= 0, "sample_strength", self.sample_strength,
             ">= 0")
        need(self.holdout is None or whole(self.holdout, 0, MAX_HOLDOUT), "holdout", self.holdout,
             f"a whole number from 0 to {MAX_HOLDOUT}")
        need(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"one of {', '.join(OPTIMIZERS)}")
        if self.optimizer == "adamw8bit" and not eight_bit_available():
            raise TrainingError(f"`optimizer` adamw8bit needs the bitsandbytes package ({INSTALL_8BIT}).",
                                field="optimizer")
        need(isinstance(self.fused_backward, bool), "fused_backward", self.fused_backward, "on or off")
        if self.fused_backward and self.gradient_accumulation != 1:
            raise TrainingError("`fused_backward` steps each parameter as soon as its gradient is complete, so it "
                                "cannot accumulate gradients over micro-batches; set `gradient_accumulation` to 1.",
                                field="fused_backward")
        if self.fused_backward and self.mixed_precision == "fp16":
            raise TrainingError("`fused_backward` cannot use fp16: its loss scaler must see every gradient before a "
                                "step; use bf16 or no.", field="fused_backward")
        need(self.mixed_precision in MIXED_PRECISION, "mixed_precision", self.mixed_precision,
             f"one of {', '.join(MIXED_PRECISION)}")
        need(isinstance(self.device, str) and DEVICE_PATTERN.fullmatch(self.device) is not None, "device",
             self.device, "auto, cpu, mps, cuda or cuda:N")
        need(bool(str(self.dataset).strip()), "dataset", self.dataset, "a dataset folder")
        need(self.photos is None or bool(str(self.photos).strip()), "photos", self.photos, "a folder of photos")
        return self

    def check_processes(self, processes: int) -> None:
        """Refuse a launch on `processes` processes that these settings cannot train on (`TrainingError`): the
        job queue checks it before a job is queued, the trainer under torchrun before its first step."""
        if self.fused_backward and processes > 1:
            raise TrainingError(f"`fused_backward` runs on one process, not {processes}: each process would step "
                                "before the gradients are averaged; turn one of them off.", field="fused_backward")

    @property
    def effective_warmup_steps(self) -> int:
        """The warm-up steps the schedule uses: `warmup_steps`, capped to `MAX_WARMUP_FRACTION` of `steps` so that
        every run spends most of its steps at its learning rate."""
        return min(self.warmup_steps, int(self.steps * MAX_WARMUP_FRACTION))

    def shuffle_probability(self, step: int) -> float:
        """The shuffle probability at optimizer step `step` (0-based), following the curriculum."""
        if not self.curriculum:
            return self.shuffle_prob
        start, end = self.curriculum_start * self.steps, self.curriculum_end * self.steps
        if step < start:
            return 0.0
        if step >= end or end <= start:
            return self.shuffle_prob
        return self.shuffle_prob * (step - start) / (end - start)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["sample_seeds"] = list(self.sample_seeds)
        return {"format": CONFIG_FORMAT, "format_version": CONFIG_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict, where: str = "config.json") -> TrainConfig:
        if data.get("format") != CONFIG_FORMAT:
            raise TrainingError(f"{where} is not a FaceStudio training configuration.")
        if data.get("format_version") != CONFIG_VERSION:
            raise TrainingError(f"{where} has format version {data.get('format_version')!r}; this FaceStudio reads "
                                f"version {CONFIG_VERSION}.")
        if "cpu" in data and "device" not in data:  # written before `device` replaced the `cpu` switch
            data = {**data, "device": "cpu" if data["cpu"] else "auto"}
        data = {key: value for key, value in data.items() if key != "cpu"}
        if "holdout" not in data:  # written before `holdout` existed: that run trains on every photo
            data = {**data, "holdout": 0}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"format", "format_version"})
        if unknown:
            raise TrainingError(f"{where} has settings this FaceStudio does not know: {', '.join(unknown)}.")
        try:
            return cls(**{key: value for key, value in data.items() if key in known})
        except TypeError as err:
            raise TrainingError(f"{where} is malformed ({err}).") from err

    def replace(self, **changes) -> TrainConfig:
        return TrainConfig(**{**asdict(self), **changes})


def create_run(root: str | Path, config: TrainConfig, *, state: RunState = RunState.QUEUED) -> RunFolder:
    """Make a new run folder holding `config` and a status (`queued` for a job, `running` for the foreground),
    whose stage is preparing when the run starts from photos (their number is not known yet), else training.

    Refuses a folder that already holds a run, or any non-empty folder: a run never overwrites earlier work.
    """
    config.check()
    run = RunFolder(Path(root))
    if run.exists():
        raise TrainingError(f"{run.root} already holds a training run; continue it with `python -m facestudio train "
                            f"--resume {run.root}` or choose another --out.")
    if run.root.exists() and (not run.root.is_dir() or any(run.root.iterdir())):
        raise TrainingError(f"{run.root} exists and is not empty; choose a new folder for the run.")
    run.root.mkdir(parents=True, exist_ok=True)
    run.write_config_dict(config.to_dict())
    if config.photos is None:
        run.write_status(RunStatus(state=state, stage=RunStage.TRAINING, total=config.steps))
    else:
        run.write_status(RunStatus(state=state, stage=RunStage.PREPARING, total=0))
    return run


def read_config(run: RunFolder) -> TrainConfig:
    return TrainConfig.from_dict(run.read_config_dict(), str(run.config_path)).check()
