"""Seconds per FACT training step and peak memory at SD1.5 size, against the bare SD1.5 UNet, side by side.

Uses the SD1.5-size random models of `benchmarks/generate.py` (real UNet, VAE and CLIP ViT-L configs; a FACT adapter
of the released size with open gates; TransFace-S), built once in `--models-dir`, and a two-photo dataset prepared
from the shared test photos with the offline face analyzer. Every variant runs in its own process, so its peak
memory is its own: the time is the median of `--steps` timed steps after `--warmup` steps, the memory the peak
while stepping (CUDA: `max_memory_allocated`, everything on the device; CPU: the kernel's peak-RSS mark, reset when
stepping starts).

Variants (`--variants`):
- `bare-forward`: the bare SD1.5 UNet (no adapter), one forward pass at the same batch, inference mode;
- `bare`: the bare UNet, forward + backward of an MSE with the gradient flowing into the text embeddings; this
  is the denominator of every "x bare" column. It is the least any adapter training must pay: FACT's trainable
  face layers sit beside all 16 cross-attention layers, so its backward pass also runs through (nearly) the whole
  frozen UNet and keeps its activations. A forward-only denominator would fold that unavoidable ~2-3x into the
  ratio and hide what FACT itself adds;
- `fact-nofair`, `fact`, `fact-gc`: `FACTTrainer.train_step()` exactly as `train` runs it (resampler, 16 gated
  face layers, AdamW on the adapter; the VAE latents, caption embeddings and TransFace tokens come from the dataset's
  encodings, computed once in `setup()` before the timed steps, as in training) with FAIR off,
  with FAIR at its default weight 0.01, with FAIR plus gradient checkpointing of the UNet; `fact-8bit`: FAIR with
  bitsandbytes' 8-bit AdamW (`--optimizer adamw8bit`: one byte per moment instead of four); `fact-fused`: FAIR with
  each parameter stepped inside the backward pass (`--fused-backward on`: the gradients never all exist at once),
  `fact-gc-fused` that with gradient checkpointing (the trainer's default), `fact-8bit-fused` with 8-bit AdamW;
- `bare-b4`, `fact-gc-b4` (defaults on CUDA): batch 4 with bf16 (fp16 without bf16), the latter with gradient
  checkpointing: the goal that batch 4 at 512x512 fits a 24 GB GPU. Their ratios are against `bare-b4`.

Example:
    python benchmarks/train_step.py --device cuda                        # 512x512, batch 1, bf16/fp16
    python benchmarks/train_step.py --device cpu --resolution 256 --steps 5 --warmup 1   # the CPU defaults
    python benchmarks/train_step.py --device cpu --variants bare,fact --rounds 3   # ratios from 3 rounds in turn
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's start-up chatter
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fact_overhead import TEXT_TOKENS, synchronize, time_steps
from benchmarks.generate import PeakMemory, build_models

DEFAULT_MODELS_DIR = Path(tempfile.gettempdir()) / "facestudio-bench-sd15"  # shared with generate.py
DATASET_PHOTOS = ("obama.jpg", "obama2.jpg")  # two photos of one person, so the shuffle has another to pick
GOAL_GIB = 24.0


@dataclass(frozen=True)
class Variant:
    """What one worker process measures."""

    label: str
    kind: str  # "forward" | "backward" (bare UNet) | "fact" (FACTTrainer.train_step)
    fair_weight: float = 0.01
    checkpointing: bool = False
    batch: int | None = None  # None: --batch-size
    mixed: bool = False  # True: bf16 (fp16 without bf16) whatever --mixed-precision says
    optimizer: str = "adamw"
    fused_backward: bool = False
    denominator: str = "bare"


VARIANTS = {
    "bare-forward": Variant("bare UNet forward (inference)", "forward"),
    "bare": Variant("bare UNet fwd+bwd (denominator)", "backward"),
    "fact-nofair": Variant("FACT step, FAIR off", "fact", fair_weight=0.0),
    "fact": Variant("FACT step, FAIR 0.01", "fact"),
    "fact-gc": Variant("FACT step, FAIR 0.01, grad ckpt", "fact", checkpointing=True),
    "fact-8bit": Variant("FACT step, FAIR 0.01, 8-bit AdamW", "fact", optimizer="adamw8bit"),
    "fact-fused": Variant("FACT step, FAIR 0.01, fused backward", "fact", fused_backward=True),
    "fact-gc-fused": Variant("FACT step, FAIR, grad ckpt, fused bwd", "fact", checkpointing=True,
                             fused_backward=True),
    "fact-8bit-fused": Variant("FACT step, FAIR, 8-bit, fused backward", "fact", optimizer="adamw8bit",
                               fused_backward=True),
    "bare-b4": Variant("bare UNet fwd+bwd, batch 4", "backward", batch=4, mixed=True, denominator="bare-b4"),
    "fact-gc-b4": Variant("FACT step, FAIR, grad ckpt, batch 4", "fact", checkpointing=True, batch=4, mixed=True,
                          denominator="bare-b4"),
}
CPU_VARIANTS = ("bare-forward", "bare", "fact-nofair", "fact", "fact-gc", "fact-fused", "fact-gc-fused", "fact-8bit")
CUDA_VARIANTS = (*CPU_VARIANTS, "bare-b4", "fact-gc-b4")


@dataclass(frozen=True)
class Job:
    """Everything a worker needs (sent as JSON on its command line)."""

    variant: str
    device: str
    precision: str  # accelerate's mixed precision: "no", "fp16" or "bf16"
    resolution: int
    batch: int
    warmup: int
    steps: int
    models_dir: str
    dataset: str
    measure_flops: bool = False  # count one more step's floating-point operations (after the timed ones)


# -- setup (parent process) ------------------------------------------------------------------------------------------


def prepare_photos_dataset(models_dir: Path) -> Path:
    """The two shared photos as a prepared dataset in `models_dir/dataset` (once; training resizes it)."""
    from facestudio.face import FaceAnalyzer
    from facestudio.training import PrepareSettings, load_manifest, prepare_dataset
    from tests.conftest import shared_dir

    out = models_dir / "dataset"
    if (out / "images").is_dir() and len(load_manifest(out).items) == len(DATASET_PHOTOS):
        return out
    faces = shared_dir() / "faces"
    with tempfile.TemporaryDirectory() as tmp:
        person = Path(tmp) / "obama"
        person.mkdir()
        for name in DATASET_PHOTOS:
            shutil.copy(faces / name, person)
        analyzer = FaceAnalyzer(backend="mediapipe", embedder="dlib")
        try:
            report = prepare_dataset(Path(tmp), out, analyzer, PrepareSettings(size=512))
        finally:
            analyzer.close()
    if len(report.kept) != len(DATASET_PHOTOS):
        raise SystemExit(f"only {len(report.kept)} of the photos in {faces} made it into the dataset")
    return out


def resolve_precision(choice: str, device: str) -> str:
    """The trainer's own rule: `auto` is bf16 (fp16 without it) on a GPU, `no` on the CPU."""
    from facestudio.training import TrainConfig
    from facestudio.training.train_fact import resolve_mixed_precision

    return resolve_mixed_precision(TrainConfig(dataset="-", mixed_precision=choice, device=device))


# -- workers (one process per variant) ---------------------------------------------------------------------------------


def bare_step(job: Job, variant: Variant, device: torch.device, dtype: torch.dtype) -> Callable[[], None]:
    """One step of the frozen SD1.5 UNet alone, on random inputs of the training batch's shapes."""
    import torch.nn.functional as F
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(Path(job.models_dir) / "base" / "unet", torch_dtype=dtype)
    unet = unet.to(device).requires_grad_(False).eval()
    generator = torch.Generator().manual_seed(0)
    side = job.resolution // 8
    latents = torch.randn(job.batch, 4, side, side, generator=generator).to(device, dtype)
    text = torch.randn(job.batch, TEXT_TOKENS, unet.config.cross_attention_dim, generator=generator).to(device, dtype)
    timesteps = torch.randint(0, 1000, (job.batch,), generator=generator).to(device)
    target = torch.randn(latents.shape, generator=generator).to(device)

    def autocast() -> torch.autocast:
        return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    if variant.kind == "forward":
        def forward() -> None:
            with torch.inference_mode(), autocast():
                unet(latents, timesteps, encoder_hidden_states=text)

        return forward

    text.requires_grad_(True)

    def forward_backward() -> None:
        with autocast():
            prediction = unet(latents, timesteps, encoder_hidden_states=text).sample
        F.mse_loss(prediction.float(), target).backward()
        text.grad = None

    return forward_backward


def fact_step(job: Job, variant: Variant, run_root: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    """(step, close) of a `FACTTrainer` set up as `train` does, over the benchmark's models and dataset."""
    from facestudio.engine import EngineSettings, ModelManager, select_device
    from facestudio.training import RunState, TrainConfig, create_run
    from facestudio.training.train_fact import FACTTrainer

    models = Path(job.models_dir)
    config = TrainConfig(
        dataset=job.dataset, base_model=str(models / "base"), init=str(models / "fact.safetensors"),
        face_encoder=str(models / "transface.safetensors"), steps=job.warmup + job.steps, batch_size=job.batch,
        resolution=job.resolution, fair_weight=variant.fair_weight, gradient_checkpointing=variant.checkpointing,
        mixed_precision=job.precision, device=job.device, warmup_steps=0, sample_every=0,
        optimizer=variant.optimizer, fused_backward=variant.fused_backward,
    )
    manager = ModelManager(EngineSettings(home=models / "home", placement=select_device(job.device), offline=True))
    trainer = FACTTrainer(create_run(run_root, config, state=RunState.RUNNING), config, manager=manager)
    trainer.setup()
    return trainer.train_step, trainer.close


def run_worker(job: Job) -> dict:
    """Set one variant up, then time its steps and take its peak memory."""
    variant = VARIANTS[job.variant]
    device = torch.device(job.device)
    if device.type == "cpu":  # what the trainer does on the CPU, for every variant alike
        from facestudio.training.cpu_memory import keep_freed_memory

        keep_freed_memory()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(job.precision, torch.float32)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if variant.kind == "fact":
            step, close = fact_step(job, variant, Path(tmp) / "run")
        else:
            step, close = bare_step(job, variant, device, dtype), (lambda: None)
        setup_s = time.perf_counter() - started
        durations: list[float] = []  # every step, warm-up included: shows how steady the machine was

        def timed_step() -> None:
            begun = time.perf_counter()
            step()
            synchronize(device)
            durations.append(time.perf_counter() - begun)

        try:
            with PeakMemory(device) as peak:
                seconds = time_steps(timed_step, device, job.warmup, job.steps)
            flops = count_flops(step) if job.measure_flops else None
        finally:
            close()
    result = {"seconds_per_step": seconds, "step_seconds": durations, "peak_bytes": peak.peak_bytes,
              "setup_seconds": setup_s,
              "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin"
                                                                                      else 1024)}
    if device.type == "cuda":
        result["reserved_bytes"] = torch.cuda.max_memory_reserved(device)
    if flops is not None:
        result["flops"] = flops
    return result


def count_flops(step: Callable[[], None]) -> int:
    """Floating-point operations of one step (matrix products, convolutions, attention: torch's FlopCounterMode),
    untimed: what the step computes, so that the time ratio can be read against the arithmetic ratio."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    def forward(query, key, value, *_, **__) -> int:
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *_, **__) -> int:
        return sdpa_backward_flop_count(grad_out, query, key, value)

    aten = torch.ops.aten
    cpu_attention = {  # torch counts the GPU attention kernels only; the CPU ones compute the same products
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
    }
    with FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        step()
    return int(counter.get_total_flops())


def spawn(job: Job) -> dict:
    """Run `job` in a fresh interpreter; its result (or error) is the last line it prints."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(job))]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"worker exited with status {done.returncode}"}


# -- report ------------------------------------------------------------------------------------------------------------


def add_ratios(rows: dict[str, dict]) -> None:
    for name, row in rows.items():
        base = rows.get(VARIANTS[name].denominator, {})
        for key, ratio in (("seconds_per_step", "time_x_bare"), ("peak_bytes", "memory_x_bare"),
                           ("flops", "flops_x_bare")):
            if key in row and key in base:
                row[ratio] = row[key] / base[key]


def combine_rounds(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    """One row per variant from several rounds (each with its ratios): the median time and the median of the rounds'
    ratios, each round's ratio taken against the denominator measured in the same round, minutes apart rather than
    the whole run apart; the largest peak; the rounds' ratios' range."""
    combined: dict[str, dict] = {}
    for name in rounds[0]:
        runs = [round_[name] for round_ in rounds if "error" not in round_[name]]
        if not runs:
            combined[name] = rounds[0][name]
            continue
        row = {**runs[0], "rounds": runs}
        row["seconds_per_step"] = statistics.median(run["seconds_per_step"] for run in runs)
        row["peak_bytes"] = max(run["peak_bytes"] for run in runs)
        for ratio in ("time_x_bare", "memory_x_bare"):
            values = [run[ratio] for run in runs if ratio in run]
            if values:
                row[ratio] = statistics.median(values)
                row[f"{ratio}_range"] = [min(values), max(values)]
        combined[name] = row
    return combined


def print_table(header: str, rows: dict[str, dict], memory: str, wall_s: float) -> None:
    def ratio(row: dict, key: str) -> str:
        return f"{row[key]:>7.2f}x" if key in row else f"{'-':>8}"

    def spread(row: dict) -> str:
        if "time_x_bare_range" not in row:
            return ""
        low, high = row["time_x_bare_range"]
        return f"  ({low:.2f}-{high:.2f}x over {len(row['rounds'])} rounds)"

    print(header)
    flops = any("flops" in row for row in rows.values())
    print(f"{'variant':<38}{'s/step':>9}{'x bare':>8}{memory:>16}{'x bare':>8}"
          + (f"{'GFLOP/step':>12}{'x bare':>8}" if flops else ""))
    for name, row in rows.items():
        label = VARIANTS[name].label
        if "error" in row:
            print(f"{label:<38}  failed: {row['error']}")
            continue
        counted = (f"{row['flops'] / 1e9:>12.0f}{ratio(row, 'flops_x_bare')}" if "flops" in row
                   else f"{'-':>12}{'-':>8}") if flops else ""
        print(f"{label:<38}{row['seconds_per_step']:>9.2f}{ratio(row, 'time_x_bare')}"
              f"{row['peak_bytes'] / 2**30:>16.2f}{ratio(row, 'memory_x_bare')}{counted}{spread(row)}")
    goal = rows.get("fact-gc-b4")
    if goal and "peak_bytes" in goal:
        allocated, reserved = goal["peak_bytes"] / 2**30, goal.get("reserved_bytes", goal["peak_bytes"]) / 2**30
        verdict = "fits" if max(allocated, reserved) <= GOAL_GIB else "does NOT fit"
        print(f"24 GB goal (batch 4, {goal['resolution']}x{goal['resolution']}, grad ckpt, {goal['precision']}): "
              f"peak {allocated:.2f} GiB allocated, {reserved:.2f} GiB reserved -> {verdict} in {GOAL_GIB:.0f} GiB")
    print(f"wall time {wall_s:.0f} s (model build, dataset and every worker's loading included)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--resolution", type=int, default=None, help="image side (default 512 on CUDA, 256 on CPU)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per step (the b4 variants use 4)")
    parser.add_argument("--mixed-precision", choices=("auto", "no", "fp16", "bf16"), default="auto",
                        help="as in `train` (auto: bf16 or fp16 on CUDA, fp32 on the CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 5; the median is reported)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2 on CUDA, 1 on CPU)")
    parser.add_argument("--variants", default=None,
                        help=f"comma list of {', '.join(VARIANTS)} (default: all on CUDA, no b4 ones on CPU)")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR,
                        help="where the random SD1.5-size models and the dataset are built once and reused")
    parser.add_argument("--flops", action="store_true",
                        help="also count each variant's floating-point operations per step (one more, untimed "
                             "step after the timed ones), to read the time ratio against the arithmetic ratio")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the variants N times in turn; each round's ratios are against that round's "
                             "denominator, and the table gives their median and range (a machine whose speed "
                             "drifts moves both sides of a round alike)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        try:
            print(json.dumps(run_worker(Job(**json.loads(args.worker)))))
        except Exception as err:  # reported in the table (an out-of-memory variant must not stop the others)
            print(json.dumps({"error": f"{type(err).__name__}: {err}"[:300]}))
            return 1
        return 0

    started = time.perf_counter()
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device == "cuda"
    resolution = args.resolution or (512 if gpu else 256)
    steps, warmup = args.steps or 5, args.warmup if args.warmup is not None else (2 if gpu else 1)
    names = args.variants.split(",") if args.variants else list(CUDA_VARIANTS if gpu else CPU_VARIANTS)
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or resolution % 64:
        parser.error(f"unknown variants {unknown}" if unknown else "--resolution must be a multiple of 64")
    precision = resolve_precision(args.mixed_precision, device)
    mixed = resolve_precision("auto", device)

    build_models(args.models_dir)
    dataset = prepare_photos_dataset(args.models_dir)
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be between 1 and 20")
    rounds: list[dict[str, dict]] = []
    for round_number in range(args.rounds):
        rows: dict[str, dict] = {}
        for name in names:
            variant = VARIANTS[name]
            job = Job(name, device, mixed if variant.mixed else precision, resolution,
                      variant.batch or args.batch_size, warmup, steps, str(args.models_dir), str(dataset), args.flops)
            progress = f" (round {round_number + 1}/{args.rounds})" if args.rounds > 1 else ""
            print(f"running {name}{progress}...", file=sys.stderr, flush=True)
            rows[name] = {**asdict(job), **spawn(job)}
        add_ratios(rows)
        rounds.append(rows)
    rows = rounds[0] if args.rounds == 1 else combine_rounds(rounds)
    wall_s = time.perf_counter() - started

    device_name = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
    if args.json:
        print(json.dumps({"device": device_name, "torch": torch.__version__, "wall_seconds": wall_s,
                          "goal_gib": GOAL_GIB, "results": rows}, indent=2))
        return 0
    memory = "peak alloc GiB" if gpu else "peak RSS GiB"
    print_table(f"device {device_name}, torch {torch.__version__}, {resolution}x{resolution}, batch "
                f"{args.batch_size}, {precision}, median of {steps} steps after {warmup} warm-up, one process per "
                f"variant{f', {args.rounds} rounds in turn' if args.rounds > 1 else ''}", rows, memory, wall_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
