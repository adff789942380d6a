"""Tiny builders for the FACT tests (diffusers' dummy-components pattern, SD1.5 topology with small widths).

Everything runs on the CPU in eval mode with seeded weights; nothing touches the network.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from facestudio.fact.install import SD15_UNET_CONFIG
from tests.conftest import shared_dir

# A tiny UNet with Stable Diffusion 1.5's topology: 3 cross-attention down blocks x 2 layers, a cross-attention
# mid block, 3 cross-attention up blocks x 3 layers = 16 face layers, as in SD1.5. Widths are shrunk.
TINY_UNET_KWARGS = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (16, 16, 32, 32),
    "norm_num_groups": 8,
    "cross_attention_dim": 24,
    "attention_head_dim": 2,  # diffusers' SD naming: this is the number of heads
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
}
TINY_TEXT_TOKENS = 7
TINY_EMBEDDING_DIM = 20  # width of the (fake) face-encoder tokens
TINY_NUM_PATCHES = 144



def build_unet(**overrides):
    """A seeded tiny UNet in eval mode (pass `device="meta"` to build without allocating)."""
    from diffusers.models import UNet2DConditionModel

    device = overrides.pop("device", "cpu")
    kwargs = {**TINY_UNET_KWARGS, **overrides}
    torch.manual_seed(0)
    with torch.device(device):
        return UNet2DConditionModel(**kwargs).eval()


@pytest.fixture
def make_unet() -> Callable:
    return build_unet


@pytest.fixture
def tiny_resampler_config():
    from facestudio.fact import ResamplerConfig

    return ResamplerConfig(
        dim=32, depth=2, heads=2, dim_head=8, num_queries=16, embedding_dim=TINY_EMBEDDING_DIM, output_dim=24
    )


@torch.no_grad()
def randomize_adapter(adapter, seed: int = 1, gate: float = 0.7) -> None:
    """Give every adapter tensor a random value, the gates a non-zero one (so the face path matters) and `ln`
    a value different from the block's norm2 (so tests see whether `ln` is used)."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in adapter.named_parameters():
        if name.endswith(("alpha_attn", "alpha_dense")):
            sign = 1.0 if name.endswith("alpha_attn") else -1.0
            param.fill_(sign * gate)
        elif name.endswith((".weight", ".bias")) and param.ndim == 1:  # norms and biases
            base = 1.0 if name.endswith(".weight") else 0.0
            param.copy_(base + 0.3 * torch.randn(param.shape, generator=generator))
        else:
            param.copy_(torch.randn(param.shape, generator=generator) / max(param.shape[-1], 1) ** 0.5)


@pytest.fixture
def randomize() -> Callable:
    return randomize_adapter


@pytest.fixture
def unet_inputs():
    """(latents [2,4,16,16], timesteps [2], text embeds [2,7,24]) from a CPU generator."""
    generator = torch.Generator().manual_seed(42)
    latents = torch.randn(2, 4, 16, 16, generator=generator)
    timesteps = torch.tensor([10, 500])
    text = torch.randn(2, TINY_TEXT_TOKENS, TINY_UNET_KWARGS["cross_attention_dim"], generator=generator)
    return latents, timesteps, text


@pytest.fixture
def face_tokens() -> Callable[[int, int], torch.Tensor]:
    """Fake face-encoder tokens for `n` photos: `[n, 144, 20]`."""

    def make(num_photos: int, seed: int = 3) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(num_photos, TINY_NUM_PATCHES, TINY_EMBEDDING_DIM, generator=generator)

    return make


def shared_fact_dir() -> Path:
    """../shared/fact next to the repository, or $FACESTUDIO_SHARED/fact."""
    return shared_dir() / "fact"


@pytest.fixture(scope="session")
def fact_manifest() -> dict:
    path = shared_fact_dir() / "fact_manifest.json"
    if not path.is_file():
        pytest.skip(f"FACT manifest not found at {path} (set FACESTUDIO_SHARED to the shared folder)")
    return json.loads(path.read_text())


@pytest.fixture
def make_sd15_meta_unet() -> Callable:
    """Stable Diffusion 1.5's UNet on the meta device: real names and shapes, no memory."""

    def make():
        return build_unet(device="meta", **SD15_UNET_CONFIG)

    return make
