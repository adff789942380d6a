"""Perceiver resampler `local_fac_prj` (FACT.md §3): 144 face tokens of one photo -> 16 tokens in the UNet's
cross-attention width. State-dict names are those of the released checkpoint (without the `local_fac_prj.`
prefix, which the adapter adds)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from facestudio.errors import CheckpointError, CheckpointMismatchError


@dataclass(frozen=True)
class ResamplerConfig:
    """Sizes of the resampler. Defaults are the released SD1.5 adapter's (output_dim 768 = SD1.5's text width)."""

    dim: int = 1024
    depth: int = 4
    heads: int = 12
    dim_head: int = 64
    num_queries: int = 16
    embedding_dim: int = 512
    output_dim: int = 768
    ff_mult: int = 4


class PerceiverAttention(nn.Module):
    """Latents attend to `cat([x, latents])`; no biases; softmax in float32 (as released)."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        inner_dim = heads * dim_head
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(dim, inner_dim * 2, bias=False)
        self.to_out = nn.Linear(inner_dim, dim, bias=False)

    def forward(self, features: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        features = self.norm1(features)
        latents = self.norm2(latents)
        batch, num_latents, _ = latents.shape
        query = self.to_q(latents)
        key, value = self.to_kv(torch.cat([features, latents], dim=1)).chunk(2, dim=-1)
        query, key, value = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2).float() for t in (query, key, value))
        # Only 16 queries over 160 keys: float32 here costs nothing and matches the released float32 softmax.
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).reshape(batch, num_latents, -1).to(latents.dtype)
        return self.to_out(out)


def _feed_forward(dim: int, mult: int) -> nn.Sequential:
    # Indices 0, 1, 3 carry weights (`layers.i.1.{0,1,3}` in the released layout); 2 is the GELU.
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )


class FaceResampler(nn.Module):
    r"""Perceiver resampler from face-encoder tokens to FACT face tokens.

    Components: `latents` `[1, num_queries, dim]` (learned queries), `proj_in` (embedding_dim -> dim), `layers`
    (`depth` pairs of `PerceiverAttention` and a LayerNorm-GELU feed-forward, both residual), `proj_out`
    (dim -> output_dim) and `norm_out`.

    Args:
        config (`ResamplerConfig`, *optional*, defaults to the released sizes).
    """

    def __init__(self, config: ResamplerConfig | None = None):
        super().__init__()
        config = config or ResamplerConfig()
        self.config = config
        self.latents = nn.Parameter(torch.randn(1, config.num_queries, config.dim) / config.dim**0.5)
        self.proj_in = nn.Linear(config.embedding_dim, config.dim)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PerceiverAttention(config.dim, config.heads, config.dim_head),
                    _feed_forward(config.dim, config.ff_mult),
                ]
            )
            for _ in range(config.depth)
        )
        self.proj_out = nn.Linear(config.dim, config.output_dim)
        self.norm_out = nn.LayerNorm(config.output_dim)

    def forward(self, face_tokens: torch.Tensor) -> torch.Tensor:
        """`[N, L, embedding_dim]` encoder tokens (L = 144 for TransFace) -> `[N, num_queries, output_dim]`."""
        if face_tokens.ndim != 3 or face_tokens.shape[-1] != self.config.embedding_dim:
            raise ValueError(
                f"`face_tokens` must have shape [N, L, {self.config.embedding_dim}]; got {tuple(face_tokens.shape)}."
            )
        features = self.proj_in(face_tokens.to(self.latents.dtype))
        latents = self.latents.expand(face_tokens.shape[0], -1, -1)
        # Each layer is a ModuleList pair; `ModuleList` iterates as plain `nn.Module`s for the type checker.
        for attention, feed_forward in cast("Iterable[nn.ModuleList]", self.layers):
            latents = attention(features, latents) + latents
            latents = feed_forward(latents) + latents
        return self.norm_out(self.proj_out(latents))

    @staticmethod
    def config_from_state_dict(
        state_dict: Mapping[str, torch.Tensor], heads: int = 12, dim_head: int | None = None
    ) -> ResamplerConfig:
        """Infer the sizes from tensors (keys without the `local_fac_prj.` prefix).

        The attention width `heads * dim_head` is in the file, not the split: give `heads` (default 12, the
        release) or `dim_head`.
        """
        try:
            latents = state_dict["latents"]
            proj_in = state_dict["proj_in.weight"]
            proj_out = state_dict["proj_out.weight"]
            to_q = state_dict["layers.0.0.to_q.weight"]
            ff_in = state_dict["layers.0.1.1.weight"]
        except KeyError as err:
            raise CheckpointMismatchError(
                f"Resampler state dict lacks {err.args[0]!r}, needed to infer its sizes.", missing=[err.args[0]]
            ) from None
        inner_dim = to_q.shape[0]
        if dim_head is None:
            if inner_dim % heads:
                raise CheckpointError(f"Resampler attention width {inner_dim} is not divisible by heads={heads}.")
            dim_head = inner_dim // heads
        else:
            if inner_dim % dim_head:
                raise CheckpointError(f"Resampler attention width {inner_dim} is not divisible by dim_head={dim_head}.")
            heads = inner_dim // dim_head
        dim = latents.shape[-1]
        depth = 1 + max(int(m.group(1)) for key in state_dict if (m := re.match(r"layers\.(\d+)\.", key)))
        return ResamplerConfig(
            dim=dim,
            depth=depth,
            heads=heads,
            dim_head=dim_head,
            num_queries=latents.shape[1],
            embedding_dim=proj_in.shape[1],
            output_dim=proj_out.shape[0],
            ff_mult=ff_in.shape[0] // dim,
        )
