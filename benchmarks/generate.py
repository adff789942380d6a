"""Seconds per image and peak memory: the bare SD1.5 pipeline vs FaceStudio's FACT pipeline, side by side.

Builds Stable Diffusion 1.5 at its real size with random weights (same arithmetic as the real models) in a work
folder: a diffusers folder (UNet, VAE, CLIP ViT-L text encoder; a small byte-level tokenizer, which changes nothing
since prompts are always padded to 77 tokens), a FACT adapter of the released size with open gates, and a
TransFace-S encoder. Then, in one process and on one device:

1. FACT: `Engine.generate` exactly as the CLI calls it (reference photo analysis, TransFace, resampler, face tokens
   in both CFG branches, gated face attention in 16 layers, decode, identity check of the result);
2. bare: the same components with the adapter removed, through diffusers' `StableDiffusionPipeline`.

It prints, per mode, the denoising time per image (from the step callbacks), the whole request per image, and the
peak memory (CUDA: `max_memory_allocated`, everything on the device; CPU: peak process RSS), with FACT / bare ratios.
Goals on a CUDA GPU at 512x512, 30 steps, fp16: FACT <= 1.5x bare per image, peak <= 5 GB.

`--recipes` adds the recipes side by side in the same run: seconds per inpainted face, `release` (five pipeline
calls with two SD1.5-size random ControlNets) vs `single` (one), on a template made of the reference photo, and
seconds per text-to-image image with each recipe's sampling at the same `--steps`.

`--identity-tools` adds, in the same run, what the identity tools cost against a plain image (face fix off):
the face fix per fixed face (`fix-faces` on a template with the reference photo twice, at denoise 0.4 and
strength 0.55: the same one-pass crop inpainting the text-to-image face fix runs; random weights draw no faces of
their own) and best of N per candidate (`--best-of N`, its total divided by N). `--tiny` swaps the SD1.5-size
random models for the test suite's tiny ones: a smoke run of the script, not a measurement.

Example:
    python benchmarks/generate.py --device cuda --size 512 --steps 30
    python benchmarks/generate.py --device cpu --size 256 --steps 4     # what fits a laptop CPU
    python benchmarks/generate.py --device cuda --identity-tools --best-of 4
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facestudio.engine import Engine, EngineSettings, GenerateRequest, ModelChoice, ModelManager, select_device
from facestudio.engine.schedulers import make_scheduler
from facestudio.fact import FACTAdapter, TransFace
from facestudio.fact.checkpoints import save_state_dict
from facestudio.fact.install import SD15_UNET_CONFIG

REPO = Path(__file__).resolve().parents[1]
SD15_VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": 512, "layers_per_block": 2,
    "block_out_channels": (128, 256, 512, 512), "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4, "norm_num_groups": 32,
}
SD15_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "skip_prk_steps": True,
                  "set_alpha_to_one": False, "steps_offset": 1, "num_train_timesteps": 1000}


def build_models(folder: Path) -> None:
    """SD1.5-size random models on disk (fp16 files; loaded in the benchmark's dtype)."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from tests.engine.tiny_models import write_tiny_tokenizer

    if (folder / "done").exists():
        return
    print(f"building SD1.5-size random models in {folder} (once)...", file=sys.stderr)
    torch.manual_seed(0)
    base = folder / "base"
    unet = UNet2DConditionModel(**SD15_UNET_CONFIG).eval()
    adapter = FACTAdapter.for_unet(unet)
    with torch.no_grad():
        for name, param in adapter.named_parameters():
            if name.endswith(("alpha_attn", "alpha_dense")):
                param.fill_(0.5)  # open gates: the face path must do its work
    adapter.half().save(folder / "fact.safetensors")
    adapter.remove()
    unet.half().save_pretrained(base / "unet")
    del unet, adapter
    AutoencoderKL(**SD15_VAE_CONFIG).half().save_pretrained(base / "vae")
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77, vocab_size=49408,
                                        hidden_act="quick_gelu", projection_dim=768, bos_token_id=519,
                                        eos_token_id=520, pad_token_id=520))
    text.half().save_pretrained(base / "text_encoder")
    PNDMScheduler(**SD15_SCHEDULER).save_pretrained(base / "scheduler")
    write_tiny_tokenizer(base / "tokenizer")
    (base / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "PNDMScheduler"], '
        '"text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"], '
        '"unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"], '
        '"safety_checker": [null, null], "feature_extractor": [null, null], "requires_safety_checker": false}')
    save_state_dict({k: v.half() for k, v in TransFace().state_dict().items()}, folder / "transface.safetensors")
    (folder / "done").write_text("ok")


def build_controlnets(folder: Path) -> None:
    """Two SD1.5-size ControlNets (from the random UNet) for the release recipe, non-zero outputs."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    if (folder / "controlnets-done").exists():
        return
    unet = UNet2DConditionModel.from_pretrained(folder / "base" / "unet")
    for seed, name in ((5, "openpose"), (6, "canny")):
        torch.manual_seed(seed)
        net = ControlNetModel.from_unet(unet)
        with torch.no_grad():
            for module in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
                module.weight.normal_(0, 0.02)
        net.half().save_pretrained(folder / name)
    (folder / "controlnets-done").write_text("ok")


def recipe_rows(engine: Engine, request: GenerateRequest, folder: Path, repeats: int) -> list[tuple[str, float, float]]:
    """(label, single s, release s) per inpainted face and per text-to-image image, medians of `repeats`."""
    import dataclasses

    from PIL import Image

    from facestudio.engine import InpaintRequest
    from facestudio.engine.requests import recipe_defaults

    build_controlnets(folder)
    template = folder / "template.png"
    photo = Image.open(request.faces[0]).convert("RGB")
    canvas = Image.new("RGB", (photo.width * 2, photo.height), (90, 90, 90))
    canvas.paste(photo, (photo.width // 2, 0))
    canvas.save(template)
    models = dataclasses.replace(request.models, controlnet=str(folder / "openpose"),
                                 canny_controlnet=str(folder / "canny"))
    inpaint = InpaintRequest(faces=request.faces, image=str(template), steps=request.steps, width=request.width,
                             height=request.height, seed=1, models=models)
    release_sampling = {k: v for k, v in recipe_defaults(GenerateRequest, "release").items()
                        if k in ("scheduler", "cfg", "face_strength")}
    jobs = {
        ("inpaint", "single"): lambda: engine.inpaint(dataclasses.replace(inpaint, recipe="single")),
        ("inpaint", "release"): lambda: engine.inpaint(dataclasses.replace(inpaint, recipe="release")),
        ("generate", "single"): lambda: engine.generate(request),
        ("generate", "release"): lambda: engine.generate(dataclasses.replace(request, recipe="release",
                                                                             **release_sampling)),
    }
    engine.inpaint(dataclasses.replace(inpaint, recipe="release", steps=2))  # loads the ControlNets
    seconds: dict[tuple[str, str], list[float]] = {key: [] for key in jobs}
    for _ in range(repeats):
        for key, job in jobs.items():
            start = time.perf_counter()
            job()
            seconds[key].append(time.perf_counter() - start)
    median = {key: statistics.median(values) for key, values in seconds.items()}
    return [("inpaint s/face", median["inpaint", "single"], median["inpaint", "release"]),
            ("text-to-image s/image", median["generate", "single"], median["generate", "release"])]


def identity_tool_rows(engine: Engine, request: GenerateRequest, folder: Path, repeats: int,
                       best_of: int) -> list[tuple[str, float, int]]:
    """(label, seconds, units) medians of `repeats`: a plain image, the face fix per fixed face, best of N per
    candidate."""
    import dataclasses

    from PIL import Image

    from facestudio.engine import InpaintRequest
    from facestudio.engine.requests import FACE_FIX_STRENGTH

    template = folder / "two-faces.png"
    photo = Image.open(request.faces[0]).convert("RGB")
    photo.thumbnail((512, 512))
    canvas = Image.new("RGB", (photo.width * 2 + 40, photo.height + 40), (90, 90, 90))
    canvas.paste(photo, (10, 20))
    canvas.paste(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (photo.width + 30, 20))
    canvas.save(template)
    plain = dataclasses.replace(request, face_fix="off")
    # As the text-to-image face fix does: a schedule long enough that denoise 0.4 runs at least one step.
    fix_steps = max(request.steps, math.ceil(1 / request.face_fix_denoise))
    fix = InpaintRequest(faces=request.faces, image=str(template), recipe="single", steps=fix_steps,
                         width=request.width, height=request.height, seed=1, models=request.models,
                         denoise=request.face_fix_denoise, face_strength=FACE_FIX_STRENGTH)
    faces = len(engine.manager.analyzer().analyze(canvas).faces)
    jobs = {
        "plain": (lambda: engine.generate(plain), 1),
        "fix": (lambda: engine.fix_faces(fix), max(faces, 1)),
        "best": (lambda: engine.generate(dataclasses.replace(plain, best_of=best_of, keep=1)), best_of),
    }
    seconds: dict[str, list[float]] = {key: [] for key in jobs}
    for _ in range(repeats):
        for key, (job, _units) in jobs.items():
            start = time.perf_counter()
            job()
            seconds[key].append(time.perf_counter() - start)
    median = {key: statistics.median(values) for key, values in seconds.items()}
    return [("plain image (face fix off)", median["plain"], 1),
            (f"face fix, per fixed face ({faces})", median["fix"] / max(faces, 1), faces),
            (f"best of {best_of}, per candidate", median["best"] / best_of, best_of)]


class PeakMemory:
    """Peak device memory (CUDA) or peak process RSS (CPU) during a block.

    On Linux the CPU peak is the kernel's own high-water mark (`VmHWM`), reset on entry through
    `/proc/self/clear_refs`: exact, and free, where a sampling thread would compete with the step for the GIL and
    the cores (more so for a step with more Python in it). Elsewhere a thread samples the RSS every 5 ms.
    """

    _STATUS = Path("/proc/self/status")
    _CLEAR_REFS = Path("/proc/self/clear_refs")

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes = 0
        self._thread: threading.Thread | None = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif not self._reset_high_water_mark():
            import psutil

            self._process = psutil.Process()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _reset_high_water_mark(self) -> bool:
        try:
            self._CLEAR_REFS.write_text("5")  # 5: reset the peak RSS (Linux >= 4.0)
            return self._high_water_mark() is not None
        except OSError:
            return False

    def _high_water_mark(self) -> int | None:
        for line in self._STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
        return None

    def _sample(self):
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._thread is None:
            self.peak_bytes = self._high_water_mark() or 0
        else:
            self._stop.set()
            self._thread.join()


class StepClock:
    """Denoising time of one image from the step callbacks: the mean step interval times the step count."""

    def __init__(self):
        self.stamps: list[float] = []

    def tick(self, *_args) -> None:
        self.stamps.append(time.perf_counter())

    def denoise_seconds(self, steps: int) -> float:
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]
        return statistics.median(gaps) * steps if gaps else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp16", "bf16", "fp32"))
    parser.add_argument("--size", type=int, default=None, help="image side (default 512 on a GPU, 256 on the CPU)")
    parser.add_argument("--steps", type=int, default=None, help="steps (default 30 on a GPU, 4 on the CPU)")
    parser.add_argument("--repeats", type=int, default=2, help="timed images per mode (median is reported)")
    parser.add_argument("--low-vram", action="store_true", help="measure with model CPU offload")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "facestudio-bench-sd15")
    parser.add_argument("--face", type=Path, default=REPO.parent / "shared" / "faces" / "obama.jpg")
    parser.add_argument("--recipes", action="store_true", help="also time the release vs single recipes")
    parser.add_argument("--identity-tools", action="store_true",
                        help="also time the face fix per fixed face and best of N per candidate against a plain image")
    parser.add_argument("--best-of", type=int, default=3, help="N of --identity-tools' best of N (default 3)")
    parser.add_argument("--tiny", action="store_true", help="the test suite's tiny models: a smoke run only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    placement = select_device(args.device, args.dtype, args.low_vram)
    gpu = placement.device.type == "cuda"
    size = args.size or (512 if gpu else 256)
    steps = args.steps or (30 if gpu else 4)
    if args.tiny:
        from tests.engine.tiny_models import build_tiny_studio

        tiny = args.work_dir / "tiny"
        if not (tiny / "lora.safetensors").exists():
            build_tiny_studio(tiny)
        base, adapter, encoder = tiny / "base", tiny / "fact.safetensors", tiny / "transface.safetensors"
    else:
        build_models(args.work_dir)
        base, adapter = args.work_dir / "base", args.work_dir / "fact.safetensors"
        encoder = args.work_dir / "transface.safetensors"
    manager = ModelManager(EngineSettings(home=args.work_dir / "home", placement=placement, offline=True,
                                          single_file_config=str(base)))
    engine = Engine(manager)
    models = ModelChoice(str(base), str(adapter), str(encoder))
    request = GenerateRequest(faces=[str(args.face)], prompt="a portrait photo of a person, natural light",
                              seed=1, steps=steps, width=size, height=size, models=models)

    # Warm-up (loads the models, builds kernels), then bare and FACT images alternate so drift hits both alike.
    from diffusers import StableDiffusionPipeline

    engine.generate(GenerateRequest(**{**request.__dict__, "steps": 2}))
    studio = manager.adapted_base(models.base_model, models.adapter)
    pipe = StableDiffusionPipeline(**studio.components, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def fact(clock: StepClock) -> None:
        engine.generate(request, on_step=clock.tick)

    def bare(clock: StepClock) -> None:
        # The same components with the adapter taken out (and off the device, so its memory does not count).
        studio.adapter.remove()
        studio.adapter.to("cpu")
        if gpu:
            torch.cuda.empty_cache()
        if placement.low_vram:
            pipe.enable_model_cpu_offload(device=placement.device)
        try:
            pipe.scheduler = make_scheduler(request.scheduler, studio.scheduler_config)
            pipe(request.prompt, negative_prompt=request.negative_prompt, num_inference_steps=steps,
                 guidance_scale=request.cfg, width=size, height=size, generator=torch.Generator("cpu").manual_seed(1),
                 callback_on_step_end=lambda p, i, t, kw: (clock.tick(), kw)[1])
        finally:
            if placement.low_vram:
                pipe.remove_all_hooks()
                studio.offloaded_pipeline = None
            studio.adapter.to(placement.device)
            studio.adapter.install(studio.unet, pass_through_other_layers=True)

    timings = {"bare": ([], [], [0]), "fact": ([], [], [0])}
    for _ in range(args.repeats):
        for mode, run in (("bare", bare), ("fact", fact)):
            denoise, total, peak_bytes = timings[mode]
            clock = StepClock()
            with PeakMemory(placement.device) as peak:
                start = time.perf_counter()
                run(clock)
                total.append(time.perf_counter() - start)
            denoise.append(clock.denoise_seconds(steps))
            peak_bytes[0] = max(peak_bytes[0], peak.peak_bytes)
    bare_denoise, bare_total, (bare_peak,) = timings["bare"]
    fact_denoise, fact_total, (fact_peak,) = timings["fact"]

    name = torch.cuda.get_device_name(placement.device) if gpu else "CPU"
    memory = "peak CUDA memory allocated" if gpu else "peak process RSS"
    print(f"device {name}, {placement.dtype_name}, {size}x{size}, {steps} steps, CFG {request.cfg}, "
          f"{request.scheduler}, 1 reference photo, median of {args.repeats}{', low-vram' if placement.low_vram else ''}")
    print(f"{'':<28}{'bare SD1.5':>12}{'FACT':>12}{'FACT/bare':>11}")
    rows = [("denoise s/image", statistics.median(bare_denoise), statistics.median(fact_denoise)),
            ("whole request s/image", statistics.median(bare_total), statistics.median(fact_total)),
            (f"{memory} GiB", bare_peak / 2**30, fact_peak / 2**30)]
    for label, b, f in rows:
        print(f"{label:<28}{b:>12.2f}{f:>12.2f}{f / b:>10.2f}x")
    print("(whole request for FACT includes reference analysis, face encoding and the result's identity check)")
    if args.recipes:
        print(f"\n{'recipes (same run)':<28}{'single':>12}{'release':>12}{'rel/single':>11}")
        for label, single, release in recipe_rows(engine, request, args.work_dir, args.repeats):
            print(f"{label:<28}{single:>12.2f}{release:>12.2f}{release / single:>10.2f}x")
        print("(inpaint: release = stage 1 + stage 2 + drift correction + refinement; text-to-image: the same "
              "engine path, release sampling PNDM/CFG 7 vs DPM++ 2M Karras at the same steps)")
    if args.identity_tools:
        rows = identity_tool_rows(engine, request, args.work_dir, args.repeats, args.best_of)
        plain_seconds = rows[0][1]
        print(f"\n{'identity tools (same run)':<36}{'s':>10}{'x plain':>10}")
        for label, seconds, _units in rows:
            print(f"{label:<36}{seconds:>10.2f}{seconds / plain_seconds:>9.2f}x")
        print("(face fix: fix-faces at denoise 0.4, s = 0.55 on a template with the reference twice, whole request "
              "divided by the faces found; best of N: the whole request divided by N; plain: face fix off)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
