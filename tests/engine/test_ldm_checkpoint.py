"""The LDM single-file writer round-trips exactly through diffusers' real `from_single_file` loader, offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.engine.ldm_checkpoint import diffusers_to_ldm_state_dict, write_ldm_single_file
from tests.engine.tiny_models import write_tiny_base

COMPONENTS = ("unet", "vae", "text_encoder")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ldm") / "base"
    write_tiny_base(folder)
    return folder


@pytest.fixture(scope="module")
def originals(tiny_base) -> dict:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    return {
        "unet": UNet2DConditionModel.from_pretrained(tiny_base / "unet"),
        "vae": AutoencoderKL.from_pretrained(tiny_base / "vae"),
        "text_encoder": CLIPTextModel.from_pretrained(tiny_base / "text_encoder"),
    }


def test_state_dict_has_the_original_sd15_layout(originals):
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES, infer_diffusers_model_type

    state_dict = diffusers_to_ldm_state_dict(**originals)
    prefixes = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.text_model.")
    assert all(key.startswith(prefixes) for key in state_dict)
    assert infer_diffusers_model_type(state_dict) == "v1"
    assert CHECKPOINT_KEY_NAMES["v1"] in state_dict
    assert CHECKPOINT_KEY_NAMES["clip"] in state_dict
    width = originals["vae"].config.block_out_channels[-1]
    assert state_dict["first_stage_model.decoder.mid.attn_1.q.weight"].shape == (width, width, 1, 1)
    assert state_dict["first_stage_model.encoder.mid.attn_1.proj_out.weight"].shape == (width, width, 1, 1)
    # LDM numbers the decoder's blocks in reverse: diffusers' up_blocks.0 (lowest resolution) is up.3
    vae = originals["vae"].state_dict()
    assert torch.equal(state_dict["first_stage_model.decoder.up.3.block.0.conv1.weight"],
                       vae["decoder.up_blocks.0.resnets.0.conv1.weight"])
    unet = originals["unet"].state_dict()
    assert torch.equal(state_dict["model.diffusion_model.input_blocks.0.0.weight"], unet["conv_in.weight"])
    assert torch.equal(state_dict["model.diffusion_model.middle_block.1.proj_in.weight"],
                       unet["mid_block.attentions.0.proj_in.weight"])
    assert torch.equal(state_dict["model.diffusion_model.output_blocks.2.1.conv.weight"],
                       unet["up_blocks.0.upsamplers.0.conv.weight"])
    assert len(state_dict) == sum(len(model.state_dict()) for model in originals.values()) + 1  # + position_ids


@pytest.mark.parametrize(
    ("suffix", "dtype"),
    [(".safetensors", None), (".ckpt", None), (".safetensors", torch.float16)],
    ids=["safetensors", "ckpt", "safetensors-fp16"],
)
def test_from_single_file_round_trips_exactly(tiny_base, originals, tmp_path, suffix, dtype):
    from diffusers import StableDiffusionPipeline

    path = write_ldm_single_file(tiny_base, tmp_path / f"model{suffix}")
    if suffix == ".ckpt":  # diffusers reads .ckpt files with torch.load(..., weights_only=True)
        assert "state_dict" in torch.load(path, map_location="cpu", weights_only=True)

    pipe = StableDiffusionPipeline.from_single_file(
        str(path), config=str(tiny_base), local_files_only=True, torch_dtype=dtype,
        safety_checker=None, requires_safety_checker=False,
    )

    assert pipe.safety_checker is None
    assert type(pipe.scheduler).__name__ == "PNDMScheduler"
    assert pipe.tokenizer("a portrait").input_ids[0] == pipe.tokenizer.bos_token_id
    for name in COMPONENTS:
        loaded = getattr(pipe, name).state_dict()
        original = originals[name].state_dict()
        assert loaded.keys() == original.keys(), name
        for key, tensor in original.items():
            expected = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
            assert torch.equal(loaded[key], expected), f"{name}.{key}"
    for name in ("unet", "vae"):  # the configs come from the local folder, not from the hub's SD1.5
        public = [{k: v for k, v in model.config.items() if not k.startswith("_")}
                  for model in (getattr(pipe, name), originals[name])]
        assert public[0] == public[1], name
    assert pipe.text_encoder.config.hidden_size == originals["text_encoder"].config.hidden_size


def test_unknown_suffix_is_refused(tiny_base, tmp_path):
    with pytest.raises(ValueError, match="suffix"):
        write_ldm_single_file(tiny_base, tmp_path / "model.bin")
