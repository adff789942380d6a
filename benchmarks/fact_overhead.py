"""How much FACT slows one SD1.5 UNet step: bare UNet vs FaceStudio's FACT vs the released implementation's approach.

Builds an SD1.5-size UNet (the real config, random weights: same arithmetic as the real model), installs a random
FACT adapter of the released size with non-zero gates (so the face path runs), and for each image size prints:

- step time (median of `--repeats` timed steps after `--warmup` steps) of the bare UNet, of FACT as implemented
  in `facestudio.fact` (SDPA; queries for the HW visual tokens only), and of the released approach (explicit
  softmax over (HW + 16N)^2 scores, written below as `ReleasedStyleFACTProcessor`);
- the time ratios against the bare UNet;
- the FLOP ratio, counted by `torch.utils.flop_counter.FlopCounterMode` on a meta-device copy (shapes only: the
  CPU flash-attention kernel is invisible to the counter, while on meta SDPA decomposes into countable matmuls);
- peak memory of one step: on CUDA `torch.cuda.max_memory_allocated` above the memory held before the step; on
  CPU and MPS the peak resident set size (RSS) above the RSS before the step, sampled every 2 ms by psutil.

Example:
    python benchmarks/fact_overhead.py --device cpu --sizes 256 512 --batch 2 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusers.models import UNet2DConditionModel

from facestudio.fact import FACTAdapter, GatedFaceAttnProcessor
from facestudio.fact.install import SD15_UNET_CONFIG

TEXT_TOKENS = 77


class ReleasedStyleFACTProcessor:
    """The released implementation's arithmetic for one face layer, for comparison only.

    It runs the face self-attention over all HW + M tokens with an explicit `softmax(q k^T)` (materialising the
    (HW + M)^2 score matrix per head), keeps the first HW rows, and computes the text cross-attention with SDPA.
    The weights are those of a `GatedFaceAttnProcessor`, so both paths compute the same function.
    """

    def __init__(self, weights: GatedFaceAttnProcessor):
        self.w = weights

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        w = self.w
        num_face = w.conditioning.num_face_tokens
        scale = w.conditioning.scale
        text, face = encoder_hidden_states[:, :-num_face], encoder_hidden_states[:, -num_face:]
        start = hidden_states
        batch, num_visual, width = hidden_states.shape
        heads = attn.heads
        head_dim = width // heads

        tokens = w.norm1(torch.cat([hidden_states, w.linear(face)], dim=1))
        length = tokens.shape[1]

        def to_heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, heads, head_dim).permute(0, 2, 1, 3).reshape(batch * heads, length, head_dim)

        query, key, value = (to_heads(proj(tokens)) for proj in (w.attn.to_q, w.attn.to_k, w.attn.to_v))
        scores = torch.einsum("bic,bjc->bij", query, key) * head_dim**-0.5
        probs = scores.softmax(dim=-1)
        mixed = torch.einsum("bij,bjc->bic", probs, value)
        mixed = mixed.view(batch, heads, length, head_dim).permute(0, 2, 1, 3).reshape(batch, length, width)
        mixed = w.attn.to_out[0](mixed)
        hidden_states = hidden_states + scale * torch.tanh(w.alpha_attn) * mixed[:, :num_visual]
        hidden_states = hidden_states + scale * torch.tanh(w.alpha_dense) * w.ff(w.norm2(hidden_states))
        gated = hidden_states

        normed = w.ln(gated)
        q = attn.to_q(normed).view(batch, -1, heads, head_dim).transpose(1, 2)
        k = attn.to_k(text).view(batch, -1, heads, head_dim).transpose(1, 2)
        v = attn.to_v(text).view(batch, -1, heads, head_dim).transpose(1, 2)
        cross = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        cross = attn.to_out[0](cross.transpose(1, 2).reshape(batch, -1, width))
        return cross + gated - start


def build(device: torch.device | str, dtype: torch.dtype, num_photos: int, seed: int = 0):
    """SD1.5 UNet + installed random FACT adapter (non-zero gates) + face tokens, on `device`."""
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
    if dtype != torch.float32:
        unet = unet.to(dtype=dtype)
    unet.eval()
    adapter = FACTAdapter.for_unet(unet)
    if device != "meta":
        with torch.no_grad():
            for processor in adapter.face_processors().values():
                processor.alpha_attn.fill_(0.5)
                processor.alpha_dense.fill_(0.5)
    adapter.set_scale(0.5)
    with torch.no_grad():
        face = adapter.encode_faces(torch.randn(num_photos, 144, 512, device=device, dtype=dtype))
    adapter.set_num_face_tokens(face.shape[1])  # the UNet calls below pass no per-call count
    return unet, adapter, face


def use_mode(unet: UNet2DConditionModel, adapter: FACTAdapter, mode: str) -> None:
    """Switch the UNet between 'bare', 'ours' and 'released' in place."""
    if adapter.is_installed:
        current = unet.attn_processors
        if any(isinstance(p, ReleasedStyleFACTProcessor) for p in current.values()):
            unet.set_attn_processor({**current, **adapter.face_processors()})
        adapter.remove()
    if mode == "bare":
        return
    adapter.install(unet)
    if mode == "released":
        current = unet.attn_processors
        released = {name: ReleasedStyleFACTProcessor(proc) for name, proc in adapter.face_processors().items()}
        unet.set_attn_processor({**current, **released})


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class _RssSampler:
    """Peak RSS above the starting RSS, sampled in a background thread."""

    def __init__(self, interval_s: float = 0.002):
        import psutil

        self._process = psutil.Process()
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.peak_bytes = 0

    def __enter__(self) -> _RssSampler:
        self._start = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss - self._start)
            time.sleep(self._interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss - self._start)


def peak_memory_bytes(step: Callable[[], None], device: torch.device) -> int:
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with _RssSampler() as sampler:
        step()
        synchronize(device)
    return sampler.peak_bytes


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def count_flops(meta: tuple, mode: str, size: int, batch: int) -> int:
    unet, adapter, face = meta
    use_mode(unet, adapter, mode)
    latents = torch.empty(batch, 4, size // 8, size // 8, device="meta")
    embeds = torch.empty(batch, TEXT_TOKENS, 768, device="meta")
    if mode != "bare":
        embeds = torch.cat([embeds, face.expand(batch, -1, -1)], dim=1)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(latents, torch.tensor([500] * batch, device="meta"), encoder_hidden_states=embeds)
    return counter.get_total_flops()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "mps"], default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="image sizes in pixels")
    parser.add_argument("--batch", type=int, default=2, help="UNet batch (2 = one image with CFG)")
    parser.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default=None,
        help="default: float16 on cuda/mps, float32 on cpu",
    )
    parser.add_argument("--photos", type=int, default=1, help="reference photos (16 face tokens each)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--modes", nargs="+", choices=["bare", "ours", "released"], default=["bare", "ours", "released"]
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="also print max |ours - released| of the UNet output (they compute the same function)",
    )
    args = parser.parse_args(argv)
    if any(size % 8 for size in args.sizes):
        parser.error(f"`--sizes` must be multiples of 8; got {args.sizes}.")
    if "bare" not in args.modes:
        parser.error("`--modes` must include 'bare' (the ratios are against it).")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("float32" if args.device == "cpu" else "float16"))

    unet, adapter, face = build(device, dtype, args.photos)
    meta = build("meta", dtype, args.photos)
    text = torch.randn(args.batch, TEXT_TOKENS, 768, device=device, dtype=dtype)
    embeds_with_face = torch.cat([text, face.expand(args.batch, -1, -1)], dim=1)
    timesteps = torch.tensor([500] * args.batch, device=device)

    print(
        f"# device={device} ({torch.get_num_threads()} CPU threads) dtype={dtype} batch={args.batch} "
        f"photos={args.photos} warmup={args.warmup} repeats={args.repeats} torch={torch.__version__}"
    )
    print(
        "# memory: "
        + (
            "CUDA max_memory_allocated above the step's start"
            if device.type == "cuda"
            else "peak RSS above the step's start (psutil, 2 ms sampling)"
        )
    )
    header = f"{'size':>5} {'mode':>9} {'step s':>8} {'x bare':>7} {'FLOPs':>10} {'x bare':>7} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        latents = torch.randn(args.batch, 4, size // 8, size // 8, device=device, dtype=dtype)
        results = {}
        for mode in args.modes:
            use_mode(unet, adapter, mode)
            embeds = text if mode == "bare" else embeds_with_face

            def step(latents=latents, embeds=embeds) -> None:
                with torch.inference_mode():
                    unet(latents, timesteps, encoder_hidden_states=embeds)

            seconds = time_steps(step, device, args.warmup, args.repeats)
            peak = peak_memory_bytes(step, device)
            flops = count_flops(meta, mode, size, args.batch)
            results[mode] = (seconds, flops, peak)
        if args.check and {"ours", "released"} <= set(args.modes):
            outputs = []
            for mode in ("ours", "released"):
                use_mode(unet, adapter, mode)
                with torch.inference_mode():
                    outputs.append(unet(latents, timesteps, encoder_hidden_states=embeds_with_face).sample.float())
            print(
                f"# {size}px: max |ours - released| = {(outputs[0] - outputs[1]).abs().max().item():.2e} "
                f"(output scale {outputs[1].abs().max().item():.2f})"
            )
        bare_s, bare_flops, _ = results["bare"]
        for mode, (seconds, flops, peak) in results.items():
            print(
                f"{size:>5} {mode:>9} {seconds:>8.3f} {seconds / bare_s:>7.2f} {flops / 1e12:>8.2f}TF "
                f"{flops / bare_flops:>7.2f} {peak / 2**20:>9.0f}"
            )
        sys.stdout.flush()
    use_mode(unet, adapter, "bare")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
