"""Tiny random models with Stable Diffusion 1.5's topology, saved the way real ones are (diffusers' dummy-components
pattern), so the engine's real loading code runs on them without a network.

`build_tiny_studio(folder)` writes:
- `base/`: a diffusers folder (UNet with SD1.5's 16 cross-attention layers, VAE with 8x downsampling, a 2-layer CLIP
  text encoder, a byte-level CLIP tokenizer with a hand-written vocabulary, PNDM scheduler config as in SD1.5);
- `fact.safetensors`: a random FACT adapter for that UNet, written with the project's own save function;
- `transface.safetensors`: a 1-block TransFace with the released input size (112px, 9px patches);
- `controlnet/`: a ControlNet made from the UNet;
- `lora.safetensors`: a random LoRA on the UNet's attention projections, in diffusers' format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from tests.fact.conftest import TINY_UNET_KWARGS, randomize_adapter

TEXT_WIDTH = TINY_UNET_KWARGS["cross_attention_dim"]
FACE_ENCODER_WIDTH = 24  # TransFace files do not record the head count: 8 heads (the release) must divide it
SD15_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
}


@dataclass(frozen=True)
class TinyStudio:
    root: Path
    base: Path
    adapter: Path
    face_encoder: Path
    controlnet: Path
    lora: Path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table (a public, standard construction)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def write_tiny_tokenizer(folder: Path) -> None:
    """A working CLIP tokenizer: every byte (alone and word-final) is a token, plus a few merges."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols]
    merges = ["p o", "o r", "t r", "a i", "i t</w>", "a n", "e r</w>"]
    vocab_list += [m.replace(" ", "") for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(vocab_list)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tokenizer.save_pretrained(folder)


def build_tiny_components() -> dict:
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**TINY_UNET_KWARGS).eval()
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    ).eval()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=TEXT_WIDTH,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            vocab_size=530,
            max_position_embeddings=77,
            bos_token_id=519,  # <|startoftext|> in the vocabulary below
            eos_token_id=520,
            pad_token_id=520,
            projection_dim=TEXT_WIDTH,
        )
    ).eval()
    scheduler = PNDMScheduler.from_config({k: v for k, v in SD15_SCHEDULER_CONFIG.items() if k != "_class_name"})
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler": scheduler}


def write_tiny_base(folder: Path) -> None:
    """A diffusers SD1.5 folder (model_index.json and one subfolder per component)."""
    components = build_tiny_components()
    for name in ("unet", "vae", "text_encoder"):
        components[name].save_pretrained(folder / name)
    components["scheduler"].save_pretrained(folder / "scheduler")
    write_tiny_tokenizer(folder / "tokenizer")
    model_index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(model_index, indent=2))


def write_tiny_adapter(unet, path: Path, seed: int = 1) -> None:
    from facestudio.fact import FACTAdapter, ResamplerConfig

    config = ResamplerConfig(
        dim=32, depth=2, heads=2, dim_head=8, num_queries=16, embedding_dim=FACE_ENCODER_WIDTH, output_dim=TEXT_WIDTH
    )
    torch.manual_seed(seed)
    adapter = FACTAdapter.for_unet(unet, config)
    randomize_adapter(adapter, seed=seed, gate=0.9)
    adapter.save(path)
    adapter.remove()


def write_tiny_transface(path: Path) -> None:
    from facestudio.fact import TransFace, TransFaceConfig
    from facestudio.fact.checkpoints import save_state_dict

    torch.manual_seed(2)
    config = TransFaceConfig(embed_dim=FACE_ENCODER_WIDTH, depth=1, num_heads=8, mlp_hidden_dim=40,
                             num_features=FACE_ENCODER_WIDTH)
    model = TransFace(config, include_unused_heads=False)
    save_state_dict(model.state_dict(), path)


def write_tiny_controlnet(unet, folder: Path) -> None:
    from diffusers import ControlNetModel

    torch.manual_seed(3)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8))
    with torch.no_grad():  # from_unet zero-initialises the outputs; give them weight so the pose matters
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            module.weight.normal_(0, 0.3)
    controlnet.save_pretrained(folder)


def write_tiny_lora(unet, path: Path, rank: int = 4) -> None:
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                        init_lora_weights=False)
    torch.manual_seed(4)
    unet.add_adapter(config)
    layers = get_peft_model_state_dict(unet)
    StableDiffusionPipeline.save_lora_weights(path.parent, unet_lora_layers=layers, weight_name=path.name,
                                              safe_serialization=True)
    unet.delete_adapters("default")


def build_tiny_studio(root: Path) -> TinyStudio:
    from diffusers import UNet2DConditionModel

    root.mkdir(parents=True, exist_ok=True)
    studio = TinyStudio(root=root, base=root / "base", adapter=root / "fact.safetensors",
                        face_encoder=root / "transface.safetensors", controlnet=root / "controlnet",
                        lora=root / "lora.safetensors")
    write_tiny_base(studio.base)
    unet = UNet2DConditionModel.from_pretrained(studio.base / "unet").eval()
    write_tiny_adapter(unet, studio.adapter)
    write_tiny_transface(studio.face_encoder)
    write_tiny_controlnet(unet, studio.controlnet)
    write_tiny_lora(unet, studio.lora)
    return studio


def write_tiny_clip(folder: Path) -> Path:
    """A tiny random CLIP (text and vision towers of width 16, 32px images) with its processor, saved with
    `save_pretrained` like a hub snapshot: what `ClipScorer.from_pretrained` and the `clip` model kind load."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    write_tiny_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 530, "max_position_embeddings": 77, "bos_token_id": 519, "eos_token_id": 520,
                     "pad_token_id": 520},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )
    torch.manual_seed(5)
    CLIPModel(config).eval().save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder
