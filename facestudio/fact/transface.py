"""TransFace ViT face encoder (FACT.md §2), loadable from the released `ms1mv2_model_TransFace_S.pt`.

FACT conditions on the 144 patch tokens after the final LayerNorm, not on the 512-d global embedding, so
`forward` stops there. The global heads (`feature.*`, `senet.*`) exist in the released state dict; they can be
kept (`include_unused_heads=True`, the full released layout) or dropped on load to save ~48M parameters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facestudio.errors import CheckpointError, CheckpointMismatchError
from facestudio.fact.checkpoints import check_state_dict, load_state_dict

# Tensors of the global-embedding heads: present in the released file, never used by FACT.
_UNUSED_HEAD_PREFIXES = ("feature.", "senet.")


@dataclass(frozen=True)
class TransFaceConfig:
    """Sizes of a TransFace ViT. Defaults are TransFace-S as released with FACT."""

    img_size: int = 112
    patch_size: int = 9
    in_channels: int = 3
    embed_dim: int = 512
    depth: int = 12
    num_heads: int = 8
    mlp_hidden_dim: int = 2048
    num_features: int = 512
    layer_norm_eps: float = 1e-5

    @property
    def grid_size(self) -> int:
        # 112 // 9 = 12: the stride-9 patch conv leaves the last 4 rows and columns of a 112px face unused.
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2


class _ViTAttention(nn.Module):
    """Multi-head self-attention, no qkv bias, computed in float32 as the released encoder does."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"`embed_dim` ({dim}) must be divisible by `num_heads` ({num_heads}).")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, length, dim = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, length, 3, self.num_heads, dim // self.num_heads)
        # [3, B, heads, L, d]; the released encoder upcasts q, k, v and runs the whole attention in float32.
        query, key, value = qkv.permute(2, 0, 3, 1, 4).float().unbind(0)
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).reshape(batch, length, dim).to(hidden_states.dtype)
        return self.proj(out)


class _ViTMlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.ReLU6()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden_states)))


class _ViTBlock(nn.Module):
    """Pre-norm transformer block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`."""

    def __init__(self, config: TransFaceConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.attn = _ViTAttention(config.embed_dim, config.num_heads)
        self.norm2 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.mlp = _ViTMlp(config.embed_dim, config.mlp_hidden_dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.attn(self.norm1(hidden_states))
        return hidden_states + self.mlp(self.norm2(hidden_states))


class _PatchEmbed(nn.Module):
    def __init__(self, config: TransFaceConfig):
        super().__init__()
        self.proj = nn.Conv2d(config.in_channels, config.embed_dim, config.patch_size, stride=config.patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


class TransFace(nn.Module):
    r"""TransFace ViT face encoder returning FACT's local face tokens.

    Components: `patch_embed.proj` (Conv2d, kernel = stride = patch size), `pos_embed` `[1, 144, D]` (no class
    token), `mask_token` (used only by the authors' training-time masking; kept so the state dict loads),
    `blocks` (pre-norm ViT blocks, ReLU6 MLP), `norm` (final LayerNorm), and, if `include_unused_heads`, the
    global-embedding heads `feature` and `senet` that FACT does not use.

    Args:
        config (`TransFaceConfig`, *optional*, defaults to TransFace-S): the sizes.
        include_unused_heads (`bool`, *optional*, defaults to `True`): register `feature.*` and `senet.*` so the
            module has the full released layout. They are never used by `forward`.

    Example:
        ```py
        >>> encoder = TransFace.from_checkpoint("ms1mv2_model_TransFace_S.pt").eval()
        >>> tokens = encoder(aligned_faces)  # [N, 3, 112, 112] in [-1, 1] -> [N, 144, 512], float32
        ```
    """

    def __init__(self, config: TransFaceConfig | None = None, include_unused_heads: bool = True):
        super().__init__()
        config = config or TransFaceConfig()
        if config.img_size < config.patch_size:
            raise ValueError(f"`img_size` ({config.img_size}) must be at least `patch_size` ({config.patch_size}).")
        self.config = config
        dim, num_patches = config.embed_dim, config.num_patches
        self.patch_embed = _PatchEmbed(config)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(_ViTBlock(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.feature: nn.Sequential | None
        self.senet: nn.Sequential | None
        if include_unused_heads:
            self.feature = nn.Sequential(
                nn.Linear(dim * num_patches, dim, bias=False),
                nn.BatchNorm1d(dim, eps=2e-5),
                nn.Linear(dim, config.num_features, bias=False),
                nn.BatchNorm1d(config.num_features, eps=2e-5),
            )
            self.senet = nn.Sequential(
                nn.Linear(dim * num_patches, num_patches, bias=False),
                nn.ReLU(),
                nn.Linear(num_patches, num_patches, bias=False),
                nn.Sigmoid(),
            )
        else:
            self.feature = None
            self.senet = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encode aligned faces.

        Args:
            images (`torch.Tensor`): `[N, 3, 112, 112]`, RGB in [-1, 1] (FACT.md §1).

        Returns:
            `torch.Tensor`: `[N, 144, D]` patch tokens after the final LayerNorm, in float32 (the released encoder
            computes its final LayerNorm in float32 whatever the weights' dtype).
        """
        size = self.config.img_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (self.config.in_channels, size, size):
            raise ValueError(
                f"`images` must have shape [N, {self.config.in_channels}, {size}, {size}]; got {tuple(images.shape)}."
            )
        dtype = self.pos_embed.dtype
        hidden_states = self.patch_embed(images.to(dtype)) + self.pos_embed
        for block in self.blocks:
            hidden_states = block(hidden_states)
        norm = self.norm
        return F.layer_norm(
            hidden_states.float(),
            norm.normalized_shape,
            norm.weight.float() if norm.weight is not None else None,
            norm.bias.float() if norm.bias is not None else None,
            norm.eps,
        )

    @staticmethod
    def config_from_state_dict(
        state_dict: Mapping[str, torch.Tensor], num_heads: int = 8, img_size: int = 112
    ) -> TransFaceConfig:
        """Infer the sizes of a TransFace ViT from its tensors.

        Neither the head count (default 8) nor the input size (default 112, FACT's aligned faces) is recorded in
        the tensors; the input size is checked against the patch grid.
        """
        try:
            pos_embed = state_dict["pos_embed"]
            patch_weight = state_dict["patch_embed.proj.weight"]
            fc1_weight = state_dict["blocks.0.mlp.fc1.weight"]
        except KeyError as err:
            raise CheckpointMismatchError(
                f"TransFace state dict lacks {err.args[0]!r}, which is needed to infer the encoder's sizes; "
                "is this a TransFace ViT checkpoint?",
                missing=[err.args[0]],
            ) from None
        block_ids = {int(m.group(1)) for key in state_dict if (m := re.match(r"blocks\.(\d+)\.", key))}
        depth = max(block_ids) + 1
        num_patches, embed_dim = pos_embed.shape[1], pos_embed.shape[2]
        grid = math.isqrt(num_patches)
        if grid * grid != num_patches:
            raise CheckpointError(f"`pos_embed` has {num_patches} positions, which is not a square grid.")
        patch_size = patch_weight.shape[-1]
        if img_size // patch_size != grid:
            raise CheckpointError(
                f"The checkpoint has a {grid}x{grid} grid of {patch_size}px patches, which does not fit "
                f"`img_size`={img_size}; pass the input size the encoder was trained for."
            )
        feature_out = state_dict.get("feature.2.weight")
        return TransFaceConfig(
            img_size=img_size,
            patch_size=patch_size,
            in_channels=patch_weight.shape[1],
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_hidden_dim=fc1_weight.shape[0],
            num_features=feature_out.shape[0] if feature_out is not None else embed_dim,
        )

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        num_heads: int = 8,
        include_unused_heads: bool = False,
        img_size: int = 112,
    ) -> TransFace:
        """Build a TransFace whose sizes come from `state_dict` and load it strictly.

        The encoder tensors must all be present with the right shapes. The unused heads (`feature.*`, `senet.*`)
        are checked and loaded when `include_unused_heads`, otherwise they are accepted and dropped (so a file
        without them loads too). Anything else unexpected is an error. The module is allocated without a random
        initialisation and the tensors are copied in, in their own dtype, on the CPU (meta tensors give a meta
        module).
        """
        config = cls.config_from_state_dict(state_dict, num_heads=num_heads, img_size=img_size)
        if not include_unused_heads:
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith(_UNUSED_HEAD_PREFIXES)}
        with torch.device("meta"):
            model = cls(config, include_unused_heads=include_unused_heads)
        expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
        check_state_dict(state_dict, expected, what="TransFace encoder")
        on_meta = any(tensor.is_meta for tensor in state_dict.values())
        model.to_empty(device="meta" if on_meta else "cpu")
        model.to(dtype=state_dict["pos_embed"].dtype)
        model.load_state_dict(state_dict, strict=True)
        return model.eval()

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, num_heads: int = 8, include_unused_heads: bool = False, img_size: int = 112
    ) -> TransFace:
        """Load the released plain state dict (`.pt` pickle via `weights_only=True`, or `.safetensors`).

        Args:
            path (`str` or `Path`): the checkpoint file.
            num_heads (`int`, *optional*, defaults to 8): attention heads (not recorded in the file).
            include_unused_heads (`bool`, *optional*, defaults to `False`): keep the global-embedding heads.
            img_size (`int`, *optional*, defaults to 112): input size (not recorded in the file).

        Raises:
            `CheckpointError`, `UnsafeCheckpointError`, `CheckpointMismatchError`.
        """
        return cls.from_state_dict(
            load_state_dict(path), num_heads=num_heads, include_unused_heads=include_unused_heads, img_size=img_size
        )
