"""Put FACT face layers into a UNet and take them out again, exactly.

`install_face_adapter` builds the complete processor dict (`set_attn_processor` needs every layer), swaps each
face block's `norm2` for `nn.Identity()` (the face processor applies its own `ln` after the gated update; see
`attention.py`), and returns what it replaced. `remove_face_adapter` puts back the *same* processor objects and
`norm2` modules, not new default instances, so an xformers/sliced/custom processor that was installed before
survives, and the UNet computes bit-for-bit what it did before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diffusers.models.attention import BasicTransformerBlock
from torch import nn

from facestudio.fact.attention import FaceConditioning, FaceTokenPassThroughProcessor, GatedFaceAttnProcessor

if TYPE_CHECKING:
    from diffusers.models import UNet2DConditionModel
    from diffusers.models.attention import AttentionMixin

#: Stable Diffusion 1.5's UNet config (`UNet2DConditionModel(**SD15_UNET_CONFIG)`): the topology FACT's released
#: adapters are made for. Benchmarks build it with random weights (same arithmetic as the real model), tests on
#: the meta device.
SD15_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}


@dataclass(frozen=True)
class FaceLayer:
    """One cross-attention layer that gets a FACT face layer.

    Attributes:
        processor_name (`str`): key in `unet.attn_processors`, e.g.
            `"down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor"` (also the released checkpoint prefix).
        block_name (`str`): the `BasicTransformerBlock` that owns the layer.
        hidden_size (`int`): the layer's width C.
        heads (`int`): the layer's attention heads (FACT's face self-attention uses the same count).
        cross_attention_dim (`int`): the text (and face-token) width.
        norm_eps (`float`): eps of the block's `norm2`, which `ln` replaces.
    """

    processor_name: str
    block_name: str
    hidden_size: int
    heads: int
    cross_attention_dim: int
    norm_eps: float


@dataclass
class PreviousAttention:
    """What `install_face_adapter` replaced: pass it to `remove_face_adapter`.

    Attributes:
        processors (`dict[str, Any]`): every layer's processor before installation (the same objects).
        norm2_modules (`dict[str, nn.Module]`): each face block's `norm2` before installation, by block name.
    """

    processors: dict[str, Any]
    norm2_modules: dict[str, nn.Module] = field(default_factory=dict)


def _hidden_size_from_name(name: str, block_out_channels: tuple[int, ...] | list[int]) -> int | None:
    """Width of a UNet layer from its path, as diffusers' adapter loaders compute it."""
    if name.startswith("mid_block"):
        return block_out_channels[-1]
    match = re.match(r"(down|up)_blocks\.(\d+)\.", name)
    if match is None:
        return None
    index = int(match.group(2))
    channels = list(block_out_channels) if match.group(1) == "down" else list(reversed(block_out_channels))
    return channels[index] if index < len(channels) else None


def transformer_block(unet: nn.Module, block_name: str) -> BasicTransformerBlock:
    """The `BasicTransformerBlock` at `block_name` (a `FaceLayer.block_name`), typed as one."""
    block = unet.get_submodule(block_name)
    if not isinstance(block, BasicTransformerBlock):
        raise TypeError(f"{block_name!r} is a {type(block).__name__}, not a BasicTransformerBlock.")
    return block


def find_face_layers(unet: UNet2DConditionModel) -> list[FaceLayer]:
    """List the cross-attention (`attn2`) layers of `unet` that FACT puts face layers on, in module order.

    Derived from the UNet itself: every `BasicTransformerBlock` whose `attn2` attends to `encoder_hidden_states`
    (16 in SD1.5; fewer in a test UNet with fewer layers per block).

    Raises:
        `ValueError`: if a block is not of the kind FACT was defined for (LayerNorm `norm2`, no positional
        embedding), or a layer's width disagrees with `unet.config.block_out_channels`.
    """
    block_out_channels = unet.config["block_out_channels"]
    layers: list[FaceLayer] = []
    for name, module in unet.named_modules():
        if not isinstance(module, BasicTransformerBlock) or module.attn2 is None:
            continue
        attn2 = module.attn2
        if not attn2.is_cross_attention:
            continue  # `double_self_attention`: no text cross-attention to gate
        norm2 = module.norm2
        if module.norm_type != "layer_norm" or not isinstance(norm2, nn.LayerNorm) or module.pos_embed is not None:
            raise ValueError(
                f"Block {name!r} has norm_type={module.norm_type!r}, norm2={type(norm2).__name__} and "
                f"pos_embed={type(module.pos_embed).__name__}; FACT needs norm_type 'layer_norm' (a plain "
                "LayerNorm norm2) and no positional embedding, as in Stable Diffusion 1.5. Is a FACT adapter "
                "already installed?"
            )
        query_dim = attn2.to_q.in_features
        hidden_size = _hidden_size_from_name(name, block_out_channels)
        if hidden_size is not None and hidden_size != query_dim:
            raise ValueError(
                f"Layer {name}.attn2 has width {query_dim} but `block_out_channels` {tuple(block_out_channels)} "
                f"gives {hidden_size} for its path; the UNet's config does not describe its modules."
            )
        layers.append(
            FaceLayer(
                processor_name=f"{name}.attn2.processor",
                block_name=name,
                hidden_size=query_dim,
                heads=attn2.heads,
                cross_attention_dim=attn2.to_k.in_features,
                norm_eps=norm2.eps,
            )
        )
    if not layers:
        raise ValueError("The UNet has no cross-attention transformer blocks; FACT needs an SD1.5-style UNet.")
    return layers


def install_face_adapter(
    unet: UNet2DConditionModel,
    processors: Mapping[str, GatedFaceAttnProcessor],
    *,
    pass_through_other_layers: bool = False,
) -> PreviousAttention:
    """Install FACT face processors on every face layer of `unet`, in place.

    Args:
        unet (`UNet2DConditionModel`): an SD1.5-topology UNet.
        processors (`Mapping[str, GatedFaceAttnProcessor]`): one processor per `FaceLayer.processor_name`
            (all of them; see `find_face_layers`). They should share one `FaceConditioning`.
        pass_through_other_layers (`bool`, *optional*, defaults to `False`): also wrap every other layer
            (`attn1`) in a `FaceTokenPassThroughProcessor`, so that FaceStudio's `cross_attention_kwargs`
            (`face_scale`, `num_face_tokens`) reach the UNet without diffusers warning about them on layers that
            do not use them. By default other layers keep their processor object untouched. The `attn1` of an
            `only_cross_attention` block is always wrapped, because it must not see the face tokens.

    Returns:
        `PreviousAttention`: the replaced processors and `norm2` modules, for `remove_face_adapter`.

    Raises:
        `ValueError`: processors missing or extra for this UNet, sizes that do not match the layers, or an
        adapter already installed. Nothing in the UNet is changed when it raises.
    """
    layers = find_face_layers(unet)
    current = unet.attn_processors
    already = [
        name
        for name, proc in current.items()
        if isinstance(proc, (GatedFaceAttnProcessor, FaceTokenPassThroughProcessor))
    ]
    if already:
        raise ValueError(f"A FACT adapter is already installed in this UNet (e.g. {already[0]}); remove it first.")

    expected = {layer.processor_name for layer in layers}
    missing, extra = sorted(expected - set(processors)), sorted(set(processors) - expected)
    if missing or extra:
        raise ValueError(
            f"`processors` must cover exactly the UNet's {len(expected)} cross-attention layers; "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {extra[:3]}"
            f"{'...' if len(extra) > 3 else ''}."
        )
    for layer in layers:
        face_proc = processors[layer.processor_name]
        got = (face_proc.hidden_size, face_proc.cross_attention_dim, face_proc.heads)
        want = (layer.hidden_size, layer.cross_attention_dim, layer.heads)
        if got != want:
            raise ValueError(
                f"Processor for {layer.processor_name} has (hidden_size, cross_attention_dim, heads) = {got}; "
                f"the layer needs {want}."
            )
    conditionings = {id(proc.conditioning): proc.conditioning for proc in processors.values()}
    conditioning = next(iter(conditionings.values())) if len(conditionings) == 1 else FaceConditioning()
    if len(conditionings) > 1 and pass_through_other_layers:
        raise ValueError("All face processors must share one `FaceConditioning` to wrap the other layers.")

    # Bind first: it can still refuse (a weight-owning base processor) before anything in the UNet changes.
    for layer in layers:
        processors[layer.processor_name].bind_base_processor(current[layer.processor_name])

    new_processors: dict[str, Any] = dict(current)
    for layer in layers:
        new_processors[layer.processor_name] = processors[layer.processor_name]
    blocks = {layer.block_name: transformer_block(unet, layer.block_name) for layer in layers}
    strip_names = {f"{name}.attn1.processor" for name, block in blocks.items() if block.only_cross_attention}
    for name, proc in current.items():
        if name in expected:
            continue
        if name in strip_names or pass_through_other_layers:
            new_processors[name] = FaceTokenPassThroughProcessor(
                proc, conditioning, strip_face_tokens=name in strip_names
            )

    previous = PreviousAttention(processors=dict(current))
    for name, block in blocks.items():
        previous.norm2_modules[name] = block.norm2
        # diffusers types `norm2` by its first assignment (AdaLayerNorm); it holds whichever norm the block uses.
        block.norm2 = nn.Identity()  # type: ignore[assignment]
    unet.set_attn_processor(new_processors)
    return previous


def remove_face_adapter(unet: UNet2DConditionModel, previous: PreviousAttention) -> None:
    """Undo `install_face_adapter`: restore the same processor objects and `norm2` modules it replaced."""
    for proc in unet.attn_processors.values():
        if isinstance(proc, GatedFaceAttnProcessor):
            proc.bind_base_processor(None)
    unet.set_attn_processor(dict(previous.processors))
    for block_name, norm2 in previous.norm2_modules.items():
        transformer_block(unet, block_name).norm2 = norm2  # type: ignore[assignment]  # as in install_face_adapter


def install_text_only_attention(model: AttentionMixin, conditioning: FaceConditioning) -> dict[str, Any]:
    """Make a model that shares the UNet's `encoder_hidden_states` (a ControlNet) see the text tokens only.

    FACT appends the face tokens to the text tokens; a ControlNet was trained on text alone, so each of its
    cross-attention layers gets a `FaceTokenPassThroughProcessor` that drops the trailing face tokens (their count
    comes from `conditioning`, the adapter's). Layers already wrapped are re-pointed at `conditioning`.

    Returns:
        The processors that were replaced, for `model.set_attn_processor(previous)` to undo it.
    """
    current = model.attn_processors
    new_processors: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    for name, proc in current.items():
        base = proc.base_processor if isinstance(proc, FaceTokenPassThroughProcessor) else proc
        previous[name] = base
        if name.endswith("attn2.processor"):
            new_processors[name] = FaceTokenPassThroughProcessor(base, conditioning, strip_face_tokens=True)
        else:
            new_processors[name] = base
    model.set_attn_processor(new_processors)
    return previous
