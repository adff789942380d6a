"""TransFace encoder and Perceiver resampler against FACT.md §2-§3 written out by hand (float32 softmax)."""

from __future__ import annotations

import math

import pytest
import torch

from facestudio.errors import CheckpointMismatchError
from facestudio.fact import FaceResampler, ResamplerConfig, TransFace, TransFaceConfig


def _layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _attention(q, k, v, heads):
    batch, len_q, width = q.shape
    d = width // heads
    q, k, v = (t.reshape(batch, t.shape[1], heads, d).permute(0, 2, 1, 3).float() for t in (q, k, v))
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    return (probs @ v).permute(0, 2, 1, 3).reshape(batch, len_q, width)


# --------------------------------------------------------------------------------------------- TransFace


TINY_VIT = TransFaceConfig(
    img_size=27, patch_size=9, embed_dim=16, depth=2, num_heads=4, mlp_hidden_dim=32, num_features=8
)


def _reference_transface(sd: dict[str, torch.Tensor], images: torch.Tensor, heads: int) -> torch.Tensor:
    p = sd["patch_embed.proj.weight"].shape[-1]
    patches = images.unfold(2, p, p).unfold(3, p, p)  # [N, 3, g, g, p, p]
    n, c, g = patches.shape[:3]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(n, g * g, c * p * p)
    x = patches @ sd["patch_embed.proj.weight"].reshape(-1, c * p * p).T + sd["patch_embed.proj.bias"]
    x = x + sd["pos_embed"]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        b = {k.removeprefix(f"blocks.{i}."): v for k, v in sd.items() if k.startswith(f"blocks.{i}.")}
        h = _layer_norm(x, b["norm1.weight"], b["norm1.bias"])
        q, k, v = (h @ b["attn.qkv.weight"].T).chunk(3, dim=-1)
        x = x + _attention(q, k, v, heads) @ b["attn.proj.weight"].T + b["attn.proj.bias"]
        h = _layer_norm(x, b["norm2.weight"], b["norm2.bias"])
        h = torch.clamp(h @ b["mlp.fc1.weight"].T + b["mlp.fc1.bias"], 0.0, 6.0)  # ReLU6
        x = x + h @ b["mlp.fc2.weight"].T + b["mlp.fc2.bias"]
    return _layer_norm(x, sd["norm.weight"], sd["norm.bias"])


@pytest.fixture
def tiny_vit_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = TransFace(TINY_VIT)
    generator = torch.Generator().manual_seed(5)
    state = {}
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            tensor = torch.randn(tensor.shape, generator=generator) * (0.3 if tensor.ndim == 1 else 0.25)
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                tensor = tensor + 1.0
        state[name] = tensor
    return state


def _images(n: int, size: int = 27) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(9)) * 2 - 1


@torch.no_grad()
def test_transface_matches_reference_math(tiny_vit_state_dict):
    model = TransFace.from_state_dict(tiny_vit_state_dict, num_heads=4, img_size=27)
    images = _images(2)
    got = model(images)
    assert got.shape == (2, 9, 16) and got.dtype == torch.float32
    torch.testing.assert_close(got, _reference_transface(tiny_vit_state_dict, images, heads=4), rtol=0, atol=1e-5)


@torch.no_grad()
def test_transface_from_checkpoint_infers_sizes(tiny_vit_state_dict, tmp_path):
    path = tmp_path / "transface.pt"
    torch.save(tiny_vit_state_dict, path)
    model = TransFace.from_checkpoint(path, num_heads=4, img_size=27)
    assert model.config == TransFaceConfig(
        img_size=27, patch_size=9, embed_dim=16, depth=2, num_heads=4, mlp_hidden_dim=32, num_features=8
    )
    assert model.feature is None and model.senet is None  # unused heads dropped by default
    with_heads = TransFace.from_checkpoint(path, num_heads=4, include_unused_heads=True, img_size=27)
    torch.testing.assert_close(with_heads.feature[0].weight, tiny_vit_state_dict["feature.0.weight"])
    # heads are not in the file: a different count is a different (valid) model
    two_heads = TransFace.from_checkpoint(path, num_heads=2, img_size=27)
    images = _images(1)
    assert (two_heads(images) - model(images)).abs().max() > 1e-4
    torch.testing.assert_close(
        two_heads(images), _reference_transface(tiny_vit_state_dict, images, heads=2), rtol=0, atol=1e-5
    )


def test_transface_missing_encoder_tensor_is_named(tiny_vit_state_dict):
    del tiny_vit_state_dict["blocks.1.attn.proj.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"blocks\.1\.attn\.proj\.weight") as info:
        TransFace.from_state_dict(tiny_vit_state_dict, num_heads=4, img_size=27)
    assert info.value.missing == ["blocks.1.attn.proj.weight"]


def test_transface_without_unused_heads_still_loads(tiny_vit_state_dict):
    encoder_only = {k: v for k, v in tiny_vit_state_dict.items() if not k.startswith(("feature.", "senet."))}
    TransFace.from_state_dict(encoder_only, num_heads=4, img_size=27)
    with pytest.raises(CheckpointMismatchError, match="feature"):
        TransFace.from_state_dict(encoder_only, num_heads=4, include_unused_heads=True, img_size=27)
    encoder_only["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"extra\.weight"):
        TransFace.from_state_dict(encoder_only, num_heads=4, img_size=27)


def test_transface_rejects_wrong_image_size(tiny_vit_state_dict):
    model = TransFace.from_state_dict(tiny_vit_state_dict, num_heads=4, img_size=27)
    with pytest.raises(ValueError, match="images"):
        model(torch.zeros(1, 3, 28, 28))


@torch.no_grad()
def test_transface_half_precision_is_finite(tiny_vit_state_dict):
    model = TransFace.from_state_dict(tiny_vit_state_dict, num_heads=4, img_size=27).to(torch.bfloat16)
    out = model(_images(2))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


# --------------------------------------------------------------------------------------------- Resampler


def _reference_resampler(sd: dict[str, torch.Tensor], x: torch.Tensor, heads: int) -> torch.Tensor:
    latents = sd["latents"].repeat(x.shape[0], 1, 1)
    x = x @ sd["proj_in.weight"].T + sd["proj_in.bias"]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("layers."))
    for i in range(depth):
        a = {k.removeprefix(f"layers.{i}.0."): v for k, v in sd.items() if k.startswith(f"layers.{i}.0.")}
        f = {k.removeprefix(f"layers.{i}.1."): v for k, v in sd.items() if k.startswith(f"layers.{i}.1.")}
        xn = _layer_norm(x, a["norm1.weight"], a["norm1.bias"])
        ln = _layer_norm(latents, a["norm2.weight"], a["norm2.bias"])
        q = ln @ a["to_q.weight"].T
        k, v = (torch.cat([xn, ln], dim=1) @ a["to_kv.weight"].T).chunk(2, dim=-1)
        latents = _attention(q, k, v, heads) @ a["to_out.weight"].T + latents
        h = _layer_norm(latents, f["0.weight"], f["0.bias"]) @ f["1.weight"].T
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        latents = h @ f["3.weight"].T + latents
    return _layer_norm(
        latents @ sd["proj_out.weight"].T + sd["proj_out.bias"], sd["norm_out.weight"], sd["norm_out.bias"]
    )


@torch.no_grad()
def test_resampler_matches_reference_math():
    config = ResamplerConfig(dim=32, depth=2, heads=4, dim_head=6, num_queries=16, embedding_dim=20, output_dim=24)
    torch.manual_seed(0)
    model = FaceResampler(config)
    generator = torch.Generator().manual_seed(2)
    for param in model.parameters():
        param.copy_(torch.randn(param.shape, generator=generator) * 0.3 + (1.0 if param.ndim == 1 else 0.0))
    sd = model.state_dict()
    x = torch.randn(3, 144, 20, generator=generator)
    got = model(x)
    assert got.shape == (3, 16, 24)
    torch.testing.assert_close(got, _reference_resampler(sd, x, heads=4), rtol=0, atol=1e-5)
    inferred = FaceResampler.config_from_state_dict(sd, heads=4)
    assert inferred == config
    assert FaceResampler.config_from_state_dict(sd, dim_head=6) == config


def test_resampler_released_default_sizes():
    assert ResamplerConfig() == ResamplerConfig(
        dim=1024, depth=4, heads=12, dim_head=64, num_queries=16, embedding_dim=512, output_dim=768, ff_mult=4
    )


def test_resampler_rejects_wrong_token_width():
    model = FaceResampler(ResamplerConfig(dim=32, depth=1, heads=2, dim_head=8, embedding_dim=20, output_dim=24))
    with pytest.raises(ValueError, match="face_tokens"):
        model(torch.zeros(1, 144, 21))
