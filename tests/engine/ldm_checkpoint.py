"""Write a diffusers Stable Diffusion 1.5 pipeline as one original (CompVis/LDM) checkpoint file, the layout that
single-file models on Civitai use, so tests can run diffusers' real `from_single_file` loading path on a tiny model.

This is the inverse of diffusers' `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint` and
`convert_ldm_clip_checkpoint` (`diffusers/loaders/single_file_utils.py`):

- UNet -> `model.diffusion_model.*`: `input_blocks.0.0` is `conv_in`; down block `b`, layer `l` is
  `input_blocks.{1 + b * (L + 1) + l}` (`.0` the resnet, `.1` the transformer) and its downsampler is
  `input_blocks.{1 + b * (L + 1) + L}.0.op`; `middle_block.0/1/2` are resnet 0, attention 0, resnet 1; up block `b`,
  layer `l` (L + 1 layers) is `output_blocks.{b * (L + 1) + l}` and its upsampler is `.1.conv` after the last layer,
  or `.2.conv` when that layer has a transformer; `time_embed.0/2` and `out.0/2` are the time MLP and the output
  norm/conv. Resnets rename `norm1/conv1/norm2/conv2/time_emb_proj/conv_shortcut` to
  `in_layers.0/in_layers.2/out_layers.0/out_layers.3/emb_layers.1/skip_connection`.
- VAE -> `first_stage_model.*`: `encoder.down.{b}.block.{j}` / `.downsample.conv`, `decoder.up.{n - 1 - b}.block.{j}` /
  `.upsample.conv` (LDM numbers the decoder's blocks from the lowest resolution's end), `mid.block_1/2`,
  `mid.attn_1.{norm,q,k,v,proj_out}` with the projections stored as 1x1 convolutions, `norm_out`, `nin_shortcut`.
- CLIP text encoder -> `cond_stage_model.transformer.text_model.*` (transformers' own key names).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

_UNET_RESNET_RENAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET_RENAMES = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION_RENAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}

# diffusers module prefix -> (LDM module prefix, how the rest of the key is renamed)
_PrefixMap = dict[str, tuple[str, Callable[[str], str]]]


def _keep(rest: str) -> str:
    return rest


def _renamer(renames: dict[str, str]) -> Callable[[str], str]:
    def rename(rest: str) -> str:
        for old, new in renames.items():
            if rest.startswith(old + "."):
                return new + rest[len(old):]
        return rest

    return rename


def _convert(state_dict: dict[str, torch.Tensor], prefixes: _PrefixMap, what: str) -> dict[str, torch.Tensor]:
    ordered = sorted(prefixes.items(), key=lambda item: len(item[0]), reverse=True)
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        for old, (new, rename) in ordered:
            if key.startswith(old):
                new_key = new + rename(key[len(old):])
                break
        else:
            raise ValueError(f"no LDM name for {what} weight {key!r}")
        if new_key in converted:
            raise ValueError(f"two {what} weights map to {new_key!r}")
        converted[new_key] = tensor
    return converted


def _layers_per_block(config) -> int:
    layers = config.layers_per_block
    if not isinstance(layers, int):
        if len(set(layers)) != 1:
            raise ValueError("the LDM layout needs the same number of layers in every block")
        layers = layers[0]
    return layers


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    """The UNet's weights under LDM's `input_blocks` / `middle_block` / `output_blocks` names (no prefix)."""
    config = unet.config
    state_dict = unet.state_dict()
    layers = _layers_per_block(config)
    resnet = _renamer(_UNET_RESNET_RENAMES)
    prefixes: _PrefixMap = {
        "conv_in.": ("input_blocks.0.0.", _keep),
        "time_embedding.linear_1.": ("time_embed.0.", _keep),
        "time_embedding.linear_2.": ("time_embed.2.", _keep),
        "conv_norm_out.": ("out.0.", _keep),
        "conv_out.": ("out.2.", _keep),
        "mid_block.resnets.0.": ("middle_block.0.", resnet),
        "mid_block.attentions.0.": ("middle_block.1.", _keep),
        "mid_block.resnets.1.": ("middle_block.2.", resnet),
    }
    for block in range(len(config.down_block_types)):
        first = 1 + block * (layers + 1)
        for layer in range(layers):
            prefixes[f"down_blocks.{block}.resnets.{layer}."] = (f"input_blocks.{first + layer}.0.", resnet)
            prefixes[f"down_blocks.{block}.attentions.{layer}."] = (f"input_blocks.{first + layer}.1.", _keep)
        prefixes[f"down_blocks.{block}.downsamplers.0.conv."] = (f"input_blocks.{first + layers}.0.op.", _keep)
    for block in range(len(config.up_block_types)):
        first = block * (layers + 1)
        for layer in range(layers + 1):
            prefixes[f"up_blocks.{block}.resnets.{layer}."] = (f"output_blocks.{first + layer}.0.", resnet)
            prefixes[f"up_blocks.{block}.attentions.{layer}."] = (f"output_blocks.{first + layer}.1.", _keep)
        has_attention = any(key.startswith(f"up_blocks.{block}.attentions.") for key in state_dict)
        upsampler = f"output_blocks.{first + layers}.{2 if has_attention else 1}.conv."
        prefixes[f"up_blocks.{block}.upsamplers.0.conv."] = (upsampler, _keep)
    return _convert(state_dict, prefixes, "UNet")


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    """The VAE's weights under LDM's `encoder.down` / `decoder.up` / `mid` names (no prefix)."""
    config = vae.config
    resnet = _renamer(_VAE_RESNET_RENAMES)
    attention = _renamer(_VAE_ATTENTION_RENAMES)
    prefixes: _PrefixMap = {
        "quant_conv.": ("quant_conv.", _keep),
        "post_quant_conv.": ("post_quant_conv.", _keep),
    }
    for part in ("encoder", "decoder"):
        prefixes[f"{part}.conv_in."] = (f"{part}.conv_in.", _keep)
        prefixes[f"{part}.conv_out."] = (f"{part}.conv_out.", _keep)
        prefixes[f"{part}.conv_norm_out."] = (f"{part}.norm_out.", _keep)
        prefixes[f"{part}.mid_block.resnets.0."] = (f"{part}.mid.block_1.", resnet)
        prefixes[f"{part}.mid_block.resnets.1."] = (f"{part}.mid.block_2.", resnet)
        prefixes[f"{part}.mid_block.attentions.0."] = (f"{part}.mid.attn_1.", attention)
    layers = _layers_per_block(config)
    for block in range(len(config.down_block_types)):
        for layer in range(layers):
            prefixes[f"encoder.down_blocks.{block}.resnets.{layer}."] = (f"encoder.down.{block}.block.{layer}.", resnet)
        prefixes[f"encoder.down_blocks.{block}.downsamplers.0.conv."] = (f"encoder.down.{block}.downsample.conv.", _keep)
    blocks = len(config.up_block_types)
    for block in range(blocks):
        ldm_block = blocks - 1 - block
        for layer in range(layers + 1):
            prefixes[f"decoder.up_blocks.{block}.resnets.{layer}."] = (f"decoder.up.{ldm_block}.block.{layer}.", resnet)
        prefixes[f"decoder.up_blocks.{block}.upsamplers.0.conv."] = (f"decoder.up.{ldm_block}.upsample.conv.", _keep)
    converted = _convert(vae.state_dict(), prefixes, "VAE")
    for key, tensor in converted.items():  # LDM's attention projections are 1x1 convolutions
        if ".mid.attn_1." in key and key.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")):
            converted[key] = tensor[:, :, None, None]
    return converted


def clip_to_ldm(text_encoder) -> dict[str, torch.Tensor]:
    """The CLIP text encoder's weights as `transformer.text_model.*` keys of LDM's `FrozenCLIPEmbedder` (no prefix).

    transformers >= 5.6 flattened `CLIPTextModel` (no `text_model.` level); the LDM layout always has it.
    """
    converted = {}
    for key, tensor in text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else f"text_model.{key}"
        converted[key] = tensor
    return converted


def diffusers_to_ldm_state_dict(unet, vae, text_encoder) -> dict[str, torch.Tensor]:
    """One LDM-layout state dict holding the UNet, the VAE and the CLIP text encoder, as in an SD1.5 `.ckpt`.

    Like the released SD1.5 files it also stores the text encoder's `position_ids` (int64, [1, max_positions]).
    """
    state_dict = {UNET_PREFIX + key: tensor for key, tensor in unet_to_ldm(unet).items()}
    state_dict.update({VAE_PREFIX + key: tensor for key, tensor in vae_to_ldm(vae).items()})
    state_dict.update({CLIP_PREFIX + key: tensor for key, tensor in clip_to_ldm(text_encoder).items()})
    positions = text_encoder.config.max_position_embeddings
    state_dict[CLIP_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    return {key: tensor.detach().clone().contiguous() for key, tensor in state_dict.items()}


def write_ldm_single_file(diffusers_folder: Path, path: Path) -> Path:
    """Convert the UNet, VAE and text encoder of a diffusers SD1.5 folder into one `.safetensors` or `.ckpt` file."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    diffusers_folder, path = Path(diffusers_folder), Path(path)
    unet = UNet2DConditionModel.from_pretrained(diffusers_folder / "unet")
    vae = AutoencoderKL.from_pretrained(diffusers_folder / "vae")
    text_encoder = CLIPTextModel.from_pretrained(diffusers_folder / "text_encoder")
    state_dict = diffusers_to_ldm_state_dict(unet, vae, text_encoder)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state_dict, str(path), metadata={"format": "pt"})
    elif path.suffix == ".ckpt":
        torch.save({"state_dict": state_dict}, path)
    else:
        raise ValueError(f"unknown checkpoint suffix {path.suffix!r} (use .safetensors or .ckpt)")
    return path
