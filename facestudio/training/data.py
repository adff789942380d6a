"""What the trainer feeds on: a prepared dataset as tensors, in an order that depends only on the seed.

The order is a fresh permutation of the dataset per epoch, drawn from `seed` and the epoch number, and a run's
position in it is one number (`samples_seen`). So a checkpoint that stores that number resumes on exactly the
batch an uninterrupted run would have seen next, on any number of processes (each takes its slice of the global
batch), without pickling a data loader.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from facestudio.errors import DatasetError
from facestudio.face.align import to_unit_range
from facestudio.face.image import load_image
from facestudio.training.dataset import DatasetManifest

#: Decoded items kept in memory; a user's dataset (tens of photos) fits whole, a large one is re-read as needed.
CACHE_ITEMS = 256


def sample_generator(seed: int, position: int) -> torch.Generator:
    """The generator of the sample at global `position` of a run seeded `seed` (a hash, so nearby seeds and
    positions give unrelated streams)."""
    digest = hashlib.sha256(f"facestudio-sample:{seed}:{position}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


@dataclass(frozen=True)
class Batch:
    """`pixel_values` `[B, 3, R, R]` and `references` `[B, 3, 112, 112]` in [-1, 1]; `face_masks` `[B, 1, R, R]` in
    [0, 1]; `captions`; `indices` of the target items and `reference_indices` of the items conditioned on."""

    pixel_values: torch.Tensor
    face_masks: torch.Tensor
    references: torch.Tensor
    captions: tuple[str, ...]
    indices: tuple[int, ...]
    reference_indices: tuple[int, ...]


class TrainingData:
    """A prepared dataset (see `prepare_dataset`), loaded at `resolution`."""

    def __init__(self, manifest: DatasetManifest, resolution: int, exclude: frozenset[str] = frozenset()):
        """`exclude`: the image paths of items held out of training (`holdout.py`); they are never drawn, neither
        as targets nor as references."""
        if not manifest.items:
            raise DatasetError(f"The dataset {manifest.root} has no photos; prepare it again with more photos.")
        self.manifest = manifest
        self.resolution = resolution
        self.items = tuple(item for item in manifest.items if item.image not in exclude)
        if not self.items:
            raise DatasetError(f"Every photo of {manifest.root} is held out; lower --holdout.")
        by_identity: dict[str, list[int]] = {}
        for index, item in enumerate(self.items):
            by_identity.setdefault(item.identity, []).append(index)
        self._same_identity = [by_identity[item.identity] for item in self.items]
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def can_shuffle(self, index: int) -> bool:
        """Whether the item's person has another photo to condition on."""
        return len(self._same_identity[index]) > 1

    # -- order ----------------------------------------------------------------------------------------------------

    def epoch_order(self, seed: int, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        return torch.randperm(len(self.items), generator=generator).tolist()

    def global_indices(self, seed: int, samples_seen: int, count: int) -> list[int]:
        """The `count` items after the first `samples_seen` of the seeded order (crossing epochs as needed)."""
        indices: list[int] = []
        position = samples_seen
        while len(indices) < count:
            epoch, offset = divmod(position, len(self.items))
            order = self.epoch_order(seed, epoch)
            take = order[offset : offset + count - len(indices)]
            indices.extend(take)
            position += len(take)
        return indices

    # -- items ----------------------------------------------------------------------------------------------------

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        item = self.items[index]
        size = (self.resolution, self.resolution)
        try:
            image = load_image(self.manifest.path(item.image), name=item.image)
            mask = Image.open(self.manifest.path(item.face_mask)).convert("L")
            reference = load_image(self.manifest.path(item.reference), name=item.reference)
        except (OSError, ValueError) as err:
            raise DatasetError(f"{item.image} or its masks in {self.manifest.root} cannot be read ({err}); prepare "
                               "the dataset again.") from err
        if image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        if mask.size != size:
            mask = mask.resize(size, Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(to_unit_range(np.asarray(image.convert("RGB"))))
        face_mask = torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0)[None]
        reference_pixels = torch.from_numpy(to_unit_range(np.asarray(reference.convert("RGB"))))
        entry = (pixels, face_mask, reference_pixels)
        if len(self._cache) < CACHE_ITEMS:
            self._cache[index] = entry
        return entry

    def reference_for(self, index: int, shuffle: bool, generator: torch.Generator) -> int:
        """The item to condition on: the target itself, or (shuffle) another photo of the same person."""
        others = [i for i in self._same_identity[index] if i != index]
        if not shuffle or not others:
            return index
        return others[int(torch.randint(len(others), (1,), generator=generator))]

    def batch(self, indices: Sequence[int], shuffle_prob: float, generators: Sequence[torch.Generator]) -> Batch:
        """Load `indices`; each sample's reference is shuffled with probability `shuffle_prob`, drawn from that
        sample's generator (`generators[k]` for `indices[k]`; the draw is made whether or not the person has another
        photo, so a sample's stream does not depend on the dataset's identities)."""
        references = []
        for index, generator in zip(indices, generators, strict=True):
            draw = float(torch.rand(1, generator=generator))
            references.append(self.reference_for(index, draw < shuffle_prob, generator))
        targets = [self._load(i) for i in indices]
        conditions = [self._load(i)[2] for i in references]
        return Batch(
            pixel_values=torch.stack([t[0] for t in targets]),
            face_masks=torch.stack([t[1] for t in targets]),
            references=torch.stack(conditions),
            captions=tuple(self.items[i].caption for i in indices),
            indices=tuple(indices),
            reference_indices=tuple(references),
        )
