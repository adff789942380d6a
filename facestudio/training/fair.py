"""FAIR, Face Adapting Increment Regularization (FACT.md §7): keep each face layer's increment inside the face.

For every face layer, with `x` the visual tokens entering it, `GSA(x)` the increment the layer adds and `M` the
face mask resized to the layer's token grid:

    FAIR(x) = || GSA(x) * (1 - M) || / || x * (1 - M) ||

computed per image (norms over tokens and channels) and averaged over the images and the layers. The ratio is
scale-free: it measures how much the adapter changes the off-face part of the picture relative to what is there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from facestudio.fact import FACTAdapter, GatedFaceAttnProcessor

#: Keeps the ratio finite for an image whose face mask covers everything (its off-face part is empty).
EPSILON = 1e-6


def token_grid(num_tokens: int, latent_height: int, latent_width: int) -> tuple[int, int]:
    """(rows, columns) of a layer's visual tokens: the latent grid downsampled by the layer's power of two."""
    factor = math.sqrt(latent_height * latent_width / num_tokens)
    rows = max(1, round(latent_height / factor))
    columns = num_tokens // rows
    if rows * columns != num_tokens:
        raise ValueError(f"{num_tokens} visual tokens do not form a grid of the latent's aspect "
                         f"({latent_height}x{latent_width}).")
    return rows, columns


def off_face_ratio(hidden_states: torch.Tensor, increment: torch.Tensor, off_face: torch.Tensor) -> torch.Tensor:
    """FAIR per image, `[B]`: `hidden_states`, `increment` are `[B, HW, C]`; `off_face` is `1 - M`, `[B, HW, 1]`."""
    off_face = off_face.to(increment.dtype)
    numerator = (increment * off_face).float().flatten(1).norm(dim=1)
    denominator = (hidden_states * off_face).float().flatten(1).norm(dim=1)
    return numerator / (denominator + EPSILON)


class FairRecorder:
    """Observes the face layers of one adapter during a UNet forward pass and collects FAIR per layer.

    Usage per step: `recorder.begin(face_masks, latent_size)`, run the UNet, `recorder.loss()`, backward,
    `recorder.end()`. The recorder
    always computes the same thing when a layer calls it (so gradient checkpointing's recomputation in the backward
    pass sees the same operations); `loss()` uses the values of the forward pass only.
    """

    def __init__(self, adapter: FACTAdapter):
        self._processors = list(adapter.face_processors().values())
        self._face_masks: torch.Tensor | None = None
        self._latent_size: tuple[int, int] = (0, 0)
        self._resized: dict[tuple[int, int], torch.Tensor] = {}
        self._values: list[torch.Tensor] = []
        self._expected = len(self._processors)

    def attach(self) -> FairRecorder:
        for processor in self._processors:
            processor.increment_observer = self
        return self

    def detach(self) -> None:
        for processor in self._processors:
            if processor.increment_observer is self:
                processor.increment_observer = None

    def begin(self, face_masks: torch.Tensor, latent_size: tuple[int, int]) -> None:
        """Start a forward pass. `face_masks`: `[B, 1, H, W]` in [0, 1] at any resolution; `latent_size`: (h, w)."""
        self._face_masks = face_masks.float()
        self._latent_size = latent_size
        self._resized.clear()
        self._values = []

    def end(self) -> None:
        """Stop recording (after the backward pass: gradient checkpointing recomputes layers during it)."""
        self._face_masks = None
        self._resized.clear()

    def _off_face(self, rows: int, columns: int, device: torch.device) -> torch.Tensor:
        key = (rows, columns)
        if key not in self._resized:
            # "area" averages the mask over each cell: a cell half on the face counts half.
            mask = F.interpolate(self._face_masks, size=key, mode="area").clamp(0, 1)
            self._resized[key] = (1 - mask).flatten(2).transpose(1, 2).to(device)  # [B, HW, 1]
        return self._resized[key]

    def __call__(self, layer: GatedFaceAttnProcessor, hidden_states: torch.Tensor, increment: torch.Tensor) -> None:
        if self._face_masks is None:
            return
        rows, columns = token_grid(hidden_states.shape[1], *self._latent_size)
        off_face = self._off_face(rows, columns, hidden_states.device)
        self._values.append(off_face_ratio(hidden_states, increment, off_face))

    def loss(self) -> torch.Tensor:
        """Mean FAIR over the face layers and images of the forward pass just run."""
        if len(self._values) < self._expected:
            raise RuntimeError(f"FAIR saw {len(self._values)} of {self._expected} face layers; was the UNet run "
                               "with face tokens and a face strength above 0?")
        return torch.stack(self._values[: self._expected]).mean()

    def per_layer(self) -> list[float]:
        return [float(v.detach().mean()) for v in self._values[: self._expected]]
