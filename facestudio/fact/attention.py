"""FACT's gated face self-attention, installed as the processor of each UNet cross-attention layer (FACT.md §4).

How the layer is wired into diffusers' `BasicTransformerBlock` (norm_type "layer_norm", as in SD1.5):

    block:  norm_h = block.norm2(h);  h = h + block.attn2(norm_h, encoder_hidden_states)

FACT needs the gated update on the *un-normalised* `h`, then the block's own LayerNorm (`ln`, carried by the
checkpoint), then the text cross-attention:

    h' = h + s*tanh(alpha_attn) * SelfAttn(norm1(cat([h, linear(f)])))[:, :HW]
    h' = h' + s*tanh(alpha_dense) * FF(norm2(h'))
    out = h' + CrossAttn_text(ln(h'))

So `install_face_adapter` sets `block.norm2 = nn.Identity()` (keeping the old module to restore) and this
processor receives the raw `h`. It returns `(h' - h) + CrossAttn_text(ln(h'))`, computed as the sum of the two
gated increments plus the cross-attention, so that the block's own `attn_output + hidden_states` gives exactly
FACT's `out`. The text cross-attention is the layer's previous processor (whatever was installed), called on
`ln(h')` and the text tokens only, so with `s == 0` the layer is exactly the base model with `ln` as `norm2`.

Face tokens travel after the text tokens: `encoder_hidden_states = cat([text, face], dim=1)`. How many trailing
tokens are face tokens is not guessed from the sequence length (long-prompt tricks make the text longer than
77): it is the per-call `num_face_tokens` in `cross_attention_kwargs` (what `face_conditioning` returns), or else
`FaceConditioning.num_face_tokens` (how ControlNets, called without those kwargs, learn it). 0 means no face tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class FaceConditioning:
    """State shared by every face layer of one adapter.

    Shared mutable state is safe because GPU work is serialised: one generation at a time per model. A caller
    that runs two generations on the same UNet concurrently must not change it in between; per-call overrides
    (`face_scale`, `num_face_tokens` in `cross_attention_kwargs`) exist for that case.

    Attributes:
        scale (`float`): FACT strength `s` (release: 0.5 text-to-image, 0.55 inpainting). 0 skips all face work.
        num_face_tokens (`int`): how many trailing `encoder_hidden_states` tokens are face tokens (16 per photo).
    """

    scale: float = 1.0
    num_face_tokens: int = 0


def check_face_scale(scale: float) -> float:
    """Return `scale` as a float, or raise `ValueError` if it is not a finite number >= 0."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"`face_scale` must be a finite number >= 0; got {scale!r}.") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"`face_scale` must be a finite number >= 0; got {scale!r}.")
    return value


def split_face_tokens(
    encoder_hidden_states: torch.Tensor, num_face_tokens: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split `cat([text, face])` into `(text, face)`; `face` is `None` when `num_face_tokens == 0`.

    This is also how a ControlNet attached to the same pipeline gets the text tokens only:
    `controlnet(..., encoder_hidden_states=split_face_tokens(embeds, adapter.num_face_tokens)[0])`.
    Both parts are views (no copy).
    """
    if num_face_tokens < 0:
        raise ValueError(f"`num_face_tokens` must be >= 0; got {num_face_tokens}.")
    if num_face_tokens == 0:
        return encoder_hidden_states, None
    length = encoder_hidden_states.shape[1]
    if length <= num_face_tokens:
        raise ValueError(
            f"`encoder_hidden_states` has {length} tokens but {num_face_tokens} face tokens are expected after the "
            "text tokens; build the embeddings with `face_conditioning` and pass its `cross_attention_kwargs`, or "
            "set `num_face_tokens` to match."
        )
    return encoder_hidden_states[:, :-num_face_tokens], encoder_hidden_states[:, -num_face_tokens:]


def _text_attention_mask(
    attention_mask: torch.Tensor | None, total_length: int, text_length: int
) -> torch.Tensor | None:
    """Cut a cross-attention mask given for text + face tokens down to the text tokens it will be used with."""
    if attention_mask is None or text_length == total_length or attention_mask.shape[-1] == text_length:
        return attention_mask
    if attention_mask.shape[-1] == total_length:
        return attention_mask[..., :text_length]
    raise ValueError(
        f"`encoder_attention_mask` covers {attention_mask.shape[-1]} tokens; expected {text_length} (text only) "
        f"or {total_length} (text + face)."
    )


def _split_conditioning(
    conditioning: FaceConditioning,
    encoder_hidden_states: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    num_face_tokens: int | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """`(text, face, text_mask)` from `cat([text, face])`, with the face-token count from the call or `conditioning`."""
    if encoder_hidden_states is None:
        return None, None, attention_mask
    count = conditioning.num_face_tokens if num_face_tokens is None else int(num_face_tokens)
    total = encoder_hidden_states.shape[1]
    text, face = split_face_tokens(encoder_hidden_states, count)
    return text, face, _text_attention_mask(attention_mask, total, text.shape[1])


def _call_base_processor(
    processor: Any,
    attn: nn.Module,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    temb: torch.Tensor | None,
) -> torch.Tensor:
    # Call it as `Attention.forward` would: `temb` only when there is one, since not every processor takes it.
    kwargs = {"temb": temb} if temb is not None else {}
    return processor(
        attn, hidden_states, encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask, **kwargs
    )


class _FaceSelfAttention(nn.Module):
    """Projections of the face self-attention (`attn.to_q/to_k/to_v/to_out.0` in the released layout)."""

    def __init__(self, dim: int):
        super().__init__()
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])


class _GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(hidden_states).chunk(2, dim=-1)
        return value * F.gelu(gate)


class _GatedFeedForward(nn.Module):
    """GEGLU(C -> 4C) -> Linear(4C -> C); names `net.0.proj`, `net.2` as released."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(_GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.net(hidden_states)


class IncrementObserver(Protocol):
    """Called by a face layer with its input visual tokens and the increment it adds to them (FAIR reads both).

    Under gradient checkpointing a layer runs again in the backward pass and calls the observer again; it must
    compute the same thing both times (what it records the second time can be ignored).
    """

    def __call__(self, layer: GatedFaceAttnProcessor, hidden_states: torch.Tensor, increment: torch.Tensor) -> None: ...


class GatedFaceAttnProcessor(nn.Module):
    r"""Attention processor for a UNet `attn2` layer: FACT's gated face self-attention, `ln`, then the layer's
    original text cross-attention.

    Components (released names): `linear` (face width -> C), `norm1`, `attn` (`to_q`, `to_k`, `to_v`: no bias;
    `to_out.0`), `norm2`, `ff` (GEGLU feed-forward), `ln` (replaces the block's `norm2`), and the scalar gates
    `alpha_attn`, `alpha_dense` (0 in a fresh layer, which makes it an exact no-op).

    The previous processor of the layer (`base_processor`) is bound by `install_face_adapter`; it is kept out of
    the module tree so that the state dict stays in the released layout.

    Args:
        hidden_size (`int`): C, the layer's width (320, 640 or 1280 in SD1.5).
        cross_attention_dim (`int`): width of the face tokens (the UNet's text width, 768 in SD1.5).
        heads (`int`): heads of the face self-attention; FACT uses the UNet attention's head count.
        conditioning (`FaceConditioning`, *optional*): shared strength and face-token count; a new one if omitted.
        ln_eps (`float`, *optional*, defaults to 1e-5): eps of `ln`.

    `increment_observer` (an `IncrementObserver`, `None` by default) sees each call's visual tokens and face
    increment: training computes FAIR from them.
    """

    def __init__(
        self,
        hidden_size: int,
        cross_attention_dim: int,
        heads: int,
        conditioning: FaceConditioning | None = None,
        ln_eps: float = 1e-5,
    ):
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"`hidden_size` ({hidden_size}) must be divisible by `heads` ({heads}).")
        self.hidden_size = hidden_size
        self.cross_attention_dim = cross_attention_dim
        self.heads = heads
        self.conditioning = conditioning if conditioning is not None else FaceConditioning()
        self.linear = nn.Linear(cross_attention_dim, hidden_size)
        self.norm1 = nn.LayerNorm(hidden_size)
        self.attn = _FaceSelfAttention(hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.ff = _GatedFeedForward(hidden_size)
        self.ln = nn.LayerNorm(hidden_size, eps=ln_eps)
        self.alpha_attn = nn.Parameter(torch.tensor(0.0))
        self.alpha_dense = nn.Parameter(torch.tensor(0.0))
        self.bind_base_processor(None)
        self.increment_observer: IncrementObserver | None = None

    @property
    def base_processor(self) -> Any:
        """The processor that ran this layer before FACT; it computes the text cross-attention."""
        return self.__dict__["_base_processor"]

    def bind_base_processor(self, processor: Any) -> None:
        """Set the text cross-attention processor (done by `install_face_adapter`, cleared by removal)."""
        if isinstance(processor, nn.Module) and any(True for _ in processor.state_dict()):
            raise ValueError(
                f"The layer's current processor {type(processor).__name__} owns weights; FACT wraps only weightless "
                "processors (e.g. AttnProcessor2_0, XFormersAttnProcessor). Unload the adapter that installed it "
                "before installing FACT."
            )
        # Written into __dict__ directly so that an nn.Module processor is not registered as a submodule.
        self.__dict__["_base_processor"] = processor

    def face_increment(
        self, hidden_states: torch.Tensor, face_hidden_states: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """FACT's gated update `h' - h` for visual tokens `[B, HW, C]` and face tokens `[B, M, face width]`.

        Returned as the sum of the two gated terms (not as `h' - h`), which avoids cancellation in float16.
        """
        batch, num_visual, dim = hidden_states.shape
        face = self.linear(face_hidden_states.to(hidden_states.dtype))
        if face.shape[0] == 1 and batch > 1:
            face = face.expand(batch, -1, -1)  # one set of face tokens for the whole batch
        norm_visual = self.norm1(hidden_states)
        # LayerNorm is per token, so norm1(cat([h, f])) == cat([norm1(h), norm1(f)]); and only the HW visual rows
        # of the self-attention output are kept, so queries are needed for the visual tokens only.
        keys_in = torch.cat([norm_visual, self.norm1(face)], dim=1)
        heads = self.heads
        query = self.attn.to_q(norm_visual).view(batch, num_visual, heads, -1).transpose(1, 2)
        key = self.attn.to_k(keys_in).view(batch, keys_in.shape[1], heads, -1).transpose(1, 2)
        value = self.attn.to_v(keys_in).view(batch, keys_in.shape[1], heads, -1).transpose(1, 2)
        attended = F.scaled_dot_product_attention(query, key, value)
        attended = attended.transpose(1, 2).reshape(batch, num_visual, dim)
        attended = self.attn.to_out[1](self.attn.to_out[0](attended))
        attn_increment = (scale * torch.tanh(self.alpha_attn)).to(attended.dtype) * attended
        gated = hidden_states + attn_increment
        dense_increment = (scale * torch.tanh(self.alpha_dense)).to(gated.dtype) * self.ff(self.norm2(gated))
        return attn_increment + dense_increment

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        face_scale: float | None = None,
        num_face_tokens: int | None = None,
    ) -> torch.Tensor:
        """Run the layer (the signature diffusers' `Attention.forward` calls).

        Spelled out rather than inherited from `nn.Module.__call__`: diffusers reads this signature to decide which
        `cross_attention_kwargs` (`face_scale`, `num_face_tokens`) to pass on and which to drop with a warning.

        Args:
            attn (`Attention`): the UNet layer.
            hidden_states (`torch.Tensor`): the *un-normalised* visual tokens `[B, HW, C]` (block's norm2 is Identity).
            encoder_hidden_states (`torch.Tensor`, *optional*): `cat([text, face])`, `[B, T + M, D]`.
            attention_mask (`torch.Tensor`, *optional*): mask for the text tokens (or text + face; cut to text).
            temb (`torch.Tensor`, *optional*): passed to the base processor.
            face_scale (`float`, *optional*): per-call strength instead of `conditioning.scale`.
            num_face_tokens (`int`, *optional*): per-call face-token count instead of `conditioning.num_face_tokens`.

        Returns:
            `torch.Tensor`: the increment the block adds to `hidden_states`.
        """
        return super().__call__(
            attn, hidden_states, encoder_hidden_states, attention_mask, temb, face_scale, num_face_tokens
        )

    def forward(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        face_scale: float | None = None,
        num_face_tokens: int | None = None,
    ) -> torch.Tensor:
        base = self.base_processor
        if base is None:
            raise RuntimeError(
                "GatedFaceAttnProcessor has no base processor; install it with `install_face_adapter` "
                "(or `FACTAdapter`) rather than `set_attn_processor`."
            )
        if hidden_states.ndim != 3:
            raise ValueError(
                f"FACT face layers expect visual tokens [B, HW, C]; got `hidden_states` of shape "
                f"{tuple(hidden_states.shape)}."
            )
        scale = self.conditioning.scale if face_scale is None else check_face_scale(face_scale)
        encoder_hidden_states, face, attention_mask = _split_conditioning(
            self.conditioning, encoder_hidden_states, attention_mask, num_face_tokens
        )

        if scale == 0.0 or face is None:
            # Exactly the base block with `ln` as its norm2: no face work at all.
            return _call_base_processor(base, attn, self.ln(hidden_states), encoder_hidden_states, attention_mask, temb)

        increment = self.face_increment(hidden_states, face, scale)
        if self.increment_observer is not None:
            self.increment_observer(self, hidden_states, increment)
        cross = _call_base_processor(
            base, attn, self.ln(hidden_states + increment), encoder_hidden_states, attention_mask, temb
        )
        return increment + cross


class FaceTokenPassThroughProcessor:
    """Wraps a layer's own processor on layers without a face gate.

    It accepts FaceStudio's `cross_attention_kwargs` (`face_scale`, `num_face_tokens`) by name, so diffusers does
    not warn about them, and removes the face tokens from `encoder_hidden_states` when the layer receives them
    (the `attn1` of an `only_cross_attention` block). Otherwise it calls the wrapped processor unchanged.
    """

    def __init__(self, base_processor: Any, conditioning: FaceConditioning, strip_face_tokens: bool):
        self.base_processor = base_processor
        self.conditioning = conditioning
        self.strip_face_tokens = strip_face_tokens

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        face_scale: float | None = None,
        num_face_tokens: int | None = None,
    ) -> torch.Tensor:
        if self.strip_face_tokens:
            encoder_hidden_states, _, attention_mask = _split_conditioning(
                self.conditioning, encoder_hidden_states, attention_mask, num_face_tokens
            )
        return _call_base_processor(
            self.base_processor, attn, hidden_states, encoder_hidden_states, attention_mask, temb
        )
