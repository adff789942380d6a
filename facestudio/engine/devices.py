"""Device and precision policy: CUDA fp16, Apple MPS fp16, else CPU fp32, each overridable; OOM handling.

Only the engine decides where models run. Nothing is probed at import time: `select_device` runs when the model
manager is created.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from facestudio.errors import InsufficientVRAMError, InvalidRequestError

logger = logging.getLogger(__name__)

DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp32": torch.float32, "float32": torch.float32}


@dataclass(frozen=True)
class DevicePlacement:
    """Where the models run (`device`) and in which precision (`dtype`); `low_vram` offloads idle models to RAM."""

    device: torch.device
    dtype: torch.dtype
    low_vram: bool = False

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def is_accelerator(self) -> bool:
        return self.device.type in ("cuda", "mps", "xpu")


def select_device(device: str | None = None, dtype: str | None = None, low_vram: bool = False) -> DevicePlacement:
    """Pick the device and precision: `auto` (or None) prefers CUDA, then MPS, then the CPU.

    Half precision on the CPU is refused (slow and, for some ops, unsupported); `--low-vram` on the CPU is
    ignored with a note, since everything already lives in RAM there.
    """
    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        chosen = torch.device(name)
    except RuntimeError as err:
        raise InvalidRequestError(f"`device` {device!r} is not a device name (auto, cuda, cuda:1, mps, cpu).",
                                  field="device") from err
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InvalidRequestError(f"`device` {device!r} was asked for, but this PyTorch build sees no CUDA GPU.",
                                  field="device")
    if dtype is None or dtype == "auto":
        chosen_dtype = torch.float16 if chosen.type in ("cuda", "mps") else torch.float32
    else:
        try:
            chosen_dtype = DTYPES[dtype.lower()]
        except KeyError:
            raise InvalidRequestError(f"`dtype` {dtype!r} is not one of auto, {', '.join(DTYPES)}.",
                                      field="dtype") from None
    if chosen.type == "cpu" and chosen_dtype != torch.float32:
        raise InvalidRequestError(f"`dtype` {dtype} on the CPU is not supported; use fp32 (the default there).",
                                  field="dtype")
    if low_vram and chosen.type == "cpu":
        logger.info("low-VRAM mode has no effect on the CPU (the models already live in RAM).")
        low_vram = False
    return DevicePlacement(chosen, chosen_dtype, low_vram)


def free_accelerator_memory() -> None:
    """Drop Python references first (gc), then return cached blocks to the driver."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        mps.empty_cache()


def memory_info(device: torch.device) -> tuple[int | None, int | None]:
    """(free bytes, total bytes) on a CUDA device, else (None, None)."""
    if device.type == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device)
        return int(free), int(total)
    return None, None


@contextlib.contextmanager
def out_of_memory_guard(placement: DevicePlacement, what: str) -> Iterator[None]:
    """Turn an accelerator out-of-memory error into `InsufficientVRAMError` after freeing the memory, so the
    studio keeps running and the user learns which setting to lower."""
    try:
        yield
    except torch.OutOfMemoryError as err:
        del err  # the exception holds the frames that hold the tensors
        free_accelerator_memory()
        free, total = memory_info(placement.device)
        where = (f" ({free / 2**30:.1f} of {total / 2**30:.1f} GiB free now)"
                 if free is not None and total is not None else "")
        # The front names `low_vram` its own way (a flag, or how to restart the studio with it).
        hint = "use a smaller size or fewer images" if placement.low_vram else (
            "try `low_vram`, a smaller size, or fewer images")
        raise InsufficientVRAMError(
            f"Out of {placement.device.type.upper()} memory while {what}{where}; {hint}.", free_bytes=free,
            field=None if placement.low_vram else "low_vram",
        ) from None
