"""What the frozen encoders make of a dataset, computed once and stored with it.

The VAE, the text encoder and TransFace never change during training, so encoding every photo again at every step
(the VAE alone was most of a step's time) is wasted work. Before the first step the trainer encodes each item once:
the VAE's latent distribution (mean and standard deviation) of its training crop, the text encoder's embedding of
its caption, and TransFace's tokens of its reference crop. They go into DATASET/.encodings/<key>.safetensors, where
the key hashes the model files, the resolution, the precision and the manifest: another model (or an edited VAE
file) gives another key, so the cache is recomputed exactly when something it depends on changed. Sampling the
latent from the stored distribution stays a per-step, per-sample draw, so training is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from facestudio.training.data import TrainingData

logger = logging.getLogger(__name__)

FOLDER = ".encodings"
FORMAT_VERSION = 1
#: Items encoded at once (bounded memory on a large dataset).
CHUNK = 8


@dataclass(frozen=True)
class Encodings:
    """Per item `i`: `latent_mean[i]`, `latent_std[i]` (`[4, R/8, R/8]`, before the VAE's scaling factor) and
    `face_features[i]` (TransFace tokens of the item's reference crop); `text[caption]` per caption."""

    latent_mean: torch.Tensor
    latent_std: torch.Tensor
    face_features: torch.Tensor
    text: dict[str, torch.Tensor]

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        captions = list(self.text)
        tensors = {"latent_mean": self.latent_mean, "latent_std": self.latent_std, "face_features": self.face_features,
                   "text": torch.stack([self.text[c] for c in captions])}
        return {k: v.float().contiguous() for k, v in tensors.items()}, {"captions": json.dumps(captions)}


def cache_key(model_hashes: Sequence[str], resolution: int, dtype: torch.dtype, manifest_file: Path,
              excluded: Sequence[str] = ()) -> str:
    """The name of a dataset's encodings for these models, resolution and precision (and this manifest, without
    the `excluded` items a run holds out: the encodings cover the training items only)."""
    digest = hashlib.sha256(f"v{FORMAT_VERSION}|{resolution}|{dtype}|".encode())
    for model_hash in model_hashes:
        digest.update(f"{model_hash}|".encode())
    digest.update(manifest_file.read_bytes())
    if excluded:  # (absent for a run that trains on every photo, so its key is the one it always was)
        digest.update(("|excluded|" + "|".join(sorted(excluded))).encode())
    return digest.hexdigest()[:32]


def encode_dataset(data: TrainingData, vae_encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                   face_encode: Callable[[torch.Tensor], torch.Tensor],
                   text_encode: Callable[[list[str]], torch.Tensor]) -> Encodings:
    """Run the encoders over every item (no gradients); each callable takes a CPU batch and returns CPU tensors."""
    means, stds, faces = [], [], []
    count = len(data)
    with torch.no_grad():
        for start in range(0, count, CHUNK):
            indices = list(range(start, min(start + CHUNK, count)))
            batch = data.batch(indices, 0.0, [torch.Generator() for _ in indices])  # each item is its own reference
            mean, std = vae_encode(batch.pixel_values)
            means.append(mean.float().cpu())
            stds.append(std.float().cpu())
            faces.append(face_encode(batch.references).float().cpu())
        captions = list(dict.fromkeys(item.caption for item in data.items))
        text = {caption: embed.float().cpu() for caption, embed in zip(captions, text_encode(captions), strict=True)}
    # In the layout they are stored in (the VAE gives channels-last latents): a run that encoded trains on exactly
    # the tensors a resumed run reads back.
    return Encodings(torch.cat(means).contiguous(), torch.cat(stds).contiguous(), torch.cat(faces).contiguous(),
                     text)


def load_encodings(path: Path, items: int) -> Encodings | None:
    """The stored encodings, or None when the file is missing, damaged or not for `items` items (with a warning
    for the last two: they are computed again)."""
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(path)
        captions = json.loads(metadata["captions"])
        text = dict(zip(captions, tensors["text"], strict=True))
        encodings = Encodings(tensors["latent_mean"], tensors["latent_std"], tensors["face_features"], text)
        if not (len(encodings.latent_mean) == len(encodings.latent_std) == len(encodings.face_features) == items):
            raise ValueError(f"it holds {len(encodings.latent_mean)} items, the dataset {items}")
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        logger.warning("Ignoring the damaged encodings %s (%s); they are computed again.", path.name, err)
        return None
    return encodings


def save_encodings(path: Path, encodings: Encodings) -> bool:
    """Write atomically next to the dataset; False (with a warning) where the dataset folder is read-only."""
    tensors, metadata = encodings.to_tensors()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # concurrent runs never share one
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(temporary), metadata=metadata)
        temporary.replace(path)
    except OSError as err:
        logger.warning("Cannot store the encodings with the dataset (%s); this run keeps them in memory.", err)
        temporary.unlink(missing_ok=True)
        return False
    return True
