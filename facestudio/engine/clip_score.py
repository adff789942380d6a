"""How well images follow their prompt: the CLIP score (Hessel et al. 2021, "CLIPScore"), computed by transformers'
own `CLIPModel` and `CLIPProcessor`.

A stronger face costs prompt-following; the identity score alone cannot show that. The score of an image against
a text is `100 * max(cos(image_embeds, text_embeds), 0)` (the definition torchmetrics uses), so 0 is unrelated and
real image/caption pairs of CLIP ViT-L/14 score about 25-35. The default model is the registry's `clip-vit-l14`
(Hugging Face `openai/clip-vit-large-patch14`, 1.7 GB), which `ModelManager.clip_scorer()` loads, downloading it
only then. Texts longer than CLIP's 77 tokens are cut, as Stable Diffusion cuts its prompt.

Example:
    ```py
    >>> scorer, _ = manager.clip_scorer()  # or ClipScorer.from_pretrained("path/to/clip-folder")
    >>> clip_scores([Image.open("a.png"), Image.open("b.png")], "a portrait in a garden", scorer)
    [27.41, 22.93]
    ```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from facestudio.errors import CheckpointError, InvalidRequestError

if TYPE_CHECKING:
    from transformers import CLIPModel, CLIPProcessor

#: Images scored per forward pass (keeps the memory of a long list bounded).
BATCH_SIZE = 8


@dataclass(frozen=True, eq=False)
class ClipScorer:
    """A CLIP model with its processor (tokenizer + image preprocessing), on one device, in eval mode."""

    model: CLIPModel
    processor: CLIPProcessor
    device: torch.device

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> ClipScorer:
        """Load a CLIP folder saved with `save_pretrained` (a hub snapshot is one); `CheckpointError` if broken."""
        from transformers import CLIPModel, CLIPProcessor

        try:
            model = CLIPModel.from_pretrained(str(path), dtype=dtype, local_files_only=True)
            processor = CLIPProcessor.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"Cannot load the CLIP model in {Path(path).name}: {err}") from err
        device = torch.device(device)
        return cls(model.eval().requires_grad_(False).to(device), processor, device)


def clip_scores(images: Sequence[Image.Image], prompt: str, scorer: ClipScorer) -> list[float]:
    """The CLIP score of each image against `prompt`, in the order given: `100 * max(cosine, 0)`, in [0, 100].

    Args:
        images: `Sequence[PIL.Image]`, any size and mode (converted to RGB; the processor resizes and crops).
        prompt: `str`, the text the images should show (e.g. the generation's prompt).
        scorer: `ClipScorer`, from `ModelManager.clip_scorer()` or `ClipScorer.from_pretrained`.

    Raises:
        `InvalidRequestError`: the prompt is empty.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequestError("The prompt to score the images against is empty.", field="prompt")
    if not images:
        return []
    model, processor, device = scorer.model, scorer.processor, scorer.device
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        text = processor.tokenizer([prompt], padding=True, truncation=True, return_tensors="pt")
        text_embeds = _unit(model.get_text_features(**{k: v.to(device) for k, v in text.items()}))
        scores: list[float] = []
        for start in range(0, len(images), BATCH_SIZE):
            batch = [image.convert("RGB") for image in images[start : start + BATCH_SIZE]]
            pixels = processor.image_processor(batch, return_tensors="pt")["pixel_values"].to(device, dtype)
            image_embeds = _unit(model.get_image_features(pixel_values=pixels))
            cosine = (image_embeds.float() @ text_embeds.float().T)[:, 0]
            scores.extend(float(value) for value in (100.0 * cosine.clamp(min=0.0)).cpu())
    return scores


def _unit(features: Any) -> torch.Tensor:
    """L2-normalised embeddings (transformers 5 wraps them in an output object: its pooled, projected tensor)."""
    tensor = features if isinstance(features, torch.Tensor) else features.pooler_output
    return tensor / tensor.norm(dim=-1, keepdim=True).clamp(min=1e-12)
