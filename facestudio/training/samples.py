"""Sample images during training: the same prompt, reference photo and seeds every time, so the samples of
successive steps show what training changed (and nothing else)."""

from __future__ import annotations

import torch
from PIL import Image

#: Classifier-free guidance of the samples (the release's text-to-image setting).
SAMPLE_GUIDANCE = 7.0


def render_samples(models, encoders, reference: torch.Tensor, prompt: str, config,
                   device: torch.device) -> list[Image.Image]:
    """One image per `config.sample_seeds`, at the training resolution, face strength `config.sample_strength`,
    with the "no face" tokens in the negative branch (face CFG on, as the release does). `encoders` holds the
    loaded VAE, text encoder and TransFace (`FrozenEncoders.loaded()`)."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    from facestudio.fact import face_conditioning

    adapter = models.adapter
    pipe = StableDiffusionPipeline(
        vae=encoders.vae, text_encoder=encoders.text_encoder, tokenizer=models.tokenizer, unet=models.unet,
        scheduler=DPMSolverMultistepScheduler.from_config(models.scheduler_config, use_karras_sigmas=True),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    previous_scale = adapter.scale
    was_training = adapter.training
    adapter.eval()
    try:
        with torch.no_grad():
            text, negative = pipe.encode_prompt(prompt, device, 1, True, "")
            conditioning = face_conditioning(adapter, text, encoders.face_encoder(reference.to(device, torch.float32)),
                                             negative_prompt_embeds=negative, face_cfg=True)
            adapter.set_scale(config.sample_strength)
            images = []
            for seed in config.sample_seeds:
                generator = torch.Generator().manual_seed(seed)
                result = pipe(prompt_embeds=conditioning.prompt_embeds,
                              negative_prompt_embeds=conditioning.negative_prompt_embeds,
                              cross_attention_kwargs=conditioning.cross_attention_kwargs,
                              num_inference_steps=config.sample_steps, guidance_scale=SAMPLE_GUIDANCE,
                              width=config.resolution, height=config.resolution, generator=generator)
                images.append(result.images[0])
    finally:
        adapter.set_scale(previous_scale)
        adapter.train(was_training)
    return images
