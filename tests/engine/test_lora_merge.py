"""FaceChain's styles merge LoRAs into the weights: `W += m * (alpha / r) * up @ down` (FACT.md §6, merge_lora).
diffusers' LoRA loading of the same kohya-format file, fused at scale m, must give those weights to fp32 rounding."""

from __future__ import annotations

import torch


def test_diffusers_lora_loading_gives_the_release_merged_weights(tmp_path):
    from diffusers import StableDiffusionPipeline

    from tests.engine.tiny_models import build_tiny_components, write_tiny_tokenizer

    write_tiny_tokenizer(tmp_path / "tokenizer")
    from transformers import CLIPTokenizer

    components = build_tiny_components()
    pipe = StableDiffusionPipeline(**components, tokenizer=CLIPTokenizer.from_pretrained(tmp_path / "tokenizer"),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    unet = pipe.unet
    layers = {
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q": "lora_unet_down_blocks_0_attentions_0_"
                                                                       "transformer_blocks_0_attn1_to_q",
        "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k": "lora_unet_up_blocks_1_attentions_2_"
                                                                     "transformer_blocks_0_attn2_to_k",
    }
    rank, alpha, multiplier = 4, 2.0, 0.35
    generator = torch.Generator().manual_seed(0)
    state, expected, unscaled = {}, {}, {}
    for path, kohya in layers.items():
        weight = unet.get_submodule(path).weight.detach().clone()
        down = torch.randn(rank, weight.shape[1], generator=generator)
        up = torch.randn(weight.shape[0], rank, generator=generator)
        state[f"{kohya}.lora_down.weight"] = down
        state[f"{kohya}.lora_up.weight"] = up
        state[f"{kohya}.alpha"] = torch.tensor(alpha)
        expected[path] = weight + multiplier * (alpha / rank) * (up @ down)  # the release's merge
        unscaled[path] = weight + multiplier * (up @ down)  # what forgetting alpha / r would give

    pipe.load_lora_weights(state, adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[multiplier])
    pipe.fuse_lora(lora_scale=1.0, adapter_names=["style"])
    for path, weight in expected.items():
        fused = unet.get_submodule(path)
        fused_weight = getattr(fused, "base_layer", fused).weight
        assert torch.allclose(fused_weight, weight, atol=1e-5, rtol=1e-5), path
        assert not torch.allclose(fused_weight, unscaled[path], atol=1e-3), "alpha / r must be applied"
