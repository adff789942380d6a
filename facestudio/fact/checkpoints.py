"""Checkpoint files <-> flat state dicts, safely.

Pickles (`.ckpt`, `.pt`, `.pth`, `.bin`) are read only with `torch.load(weights_only=True)`: a file that would need
arbitrary code to unpickle is refused with `UnsafeCheckpointError` before anything in it runs. Writes are atomic
(temporary file in the same folder, then `os.replace`), so an interrupted save never leaves a truncated file
under the final name. `check_state_dict` is the one strict key/shape check every loader in `fact` uses.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from facestudio.errors import CheckpointError, CheckpointMismatchError, UnsafeCheckpointError

logger = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
# How many names an error message lists before it only gives the count.
_MAX_NAMES_IN_MESSAGE = 5


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat `{name: tensor}` dict from `.safetensors` or a weights-only torch pickle, onto the CPU.

    Raises:
        `CheckpointError`: missing, unreadable, unknown extension, or not a flat dict of tensors.
        `UnsafeCheckpointError`: a pickle that would execute code (or build non-tensor objects) to load.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {str(path)!r} does not exist or is not a file.")
    suffix = path.suffix.lower()
    state_dict: object  # a pickle can hold anything; `_as_flat_tensor_dict` checks it
    if suffix == SAFETENSORS_SUFFIX:
        try:
            state_dict = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"Checkpoint {str(path)!r} is not a readable safetensors file: {err}") from err
    elif suffix in PICKLE_SUFFIXES:
        state_dict = _load_weights_only_pickle(path)
    else:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} has extension {suffix!r}; expected {SAFETENSORS_SUFFIX} or one of "
            f"{', '.join(PICKLE_SUFFIXES)}."
        )
    return _as_flat_tensor_dict(state_dict, path)


def _load_weights_only_pickle(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses any global outside torch's allow-list before calling it, so nothing has run.
        raise UnsafeCheckpointError(
            f"Refusing to load {str(path)!r}: it is a pickle that needs arbitrary objects or code to load "
            f"(torch.load(weights_only=True) said: {str(err).splitlines()[0]}). Convert it to .safetensors "
            "with a trusted tool, or download it again from the official source."
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"Checkpoint {str(path)!r} is not a readable torch file: {err}") from err


def _as_flat_tensor_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds a {type(obj).__name__}; expected a flat dict of tensor names to tensors."
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is not a flat dict of tensors: entries {_first_names(bad)} are not tensors "
            "(a nested training checkpoint? export the weights as a flat state dict)."
        )
    return dict(obj)


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """Return the string metadata in a `.safetensors` header (empty if there is none)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"Cannot read the safetensors header of {str(path)!r}: {err}") from err


def save_state_dict(
    state_dict: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write `state_dict` atomically: `.safetensors` (with `metadata`) or a torch pickle of a plain dict.

    The torch pickle (`.ckpt`/`.pt`/`.pth`/`.bin`) is what the authors' loader reads; it carries no metadata.
    Tensors are detached, made contiguous and copied to the CPU; meta tensors cannot be saved.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != SAFETENSORS_SUFFIX and suffix not in PICKLE_SUFFIXES:
        raise ValueError(f"`path` must end in {SAFETENSORS_SUFFIX} or one of {PICKLE_SUFFIXES}; got {str(path)!r}.")
    on_meta = [name for name, tensor in state_dict.items() if tensor.is_meta]
    if on_meta:
        raise ValueError(f"Cannot save tensors on the meta device (no data): {_first_names(on_meta)}.")
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in state_dict.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if suffix == SAFETENSORS_SUFFIX:
            save_file(tensors, tmp_name, metadata={str(k): str(v) for k, v in (metadata or {}).items()})
        else:
            torch.save(tensors, tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    logger.info("Saved %d tensors to %s", len(tensors), path)
    return path


def check_state_dict(
    state_dict: Mapping[str, torch.Tensor], expected_shapes: Mapping[str, torch.Size], what: str
) -> None:
    """Raise `CheckpointMismatchError` unless `state_dict` has exactly the expected names and shapes.

    Args:
        state_dict (`Mapping[str, torch.Tensor]`): the tensors read from a file.
        expected_shapes (`Mapping[str, torch.Size]`): the module's state-dict names and shapes.
        what (`str`): what is being loaded, for the message (e.g. "FACT adapter").
    """
    missing = sorted(set(expected_shapes) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected_shapes))
    mismatched = sorted(
        f"{name} (file {list(state_dict[name].shape)}, expected {list(expected_shapes[name])})"
        for name in set(state_dict) & set(expected_shapes)
        if tuple(state_dict[name].shape) != tuple(expected_shapes[name])
    )
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing: {_first_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {_first_names(unexpected)}")
    if mismatched:
        parts.append(f"{len(mismatched)} with the wrong shape: {_first_names(mismatched)}")
    raise CheckpointMismatchError(
        f"The {what} checkpoint does not match the model ({'; '.join(parts)}). Is it the right file for this "
        "base model?",
        missing=missing,
        unexpected=unexpected,
        mismatched=[entry.split(" (", 1)[0] for entry in mismatched],
    )


def _first_names(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES_IN_MESSAGE])
    more = len(names) - _MAX_NAMES_IN_MESSAGE
    return f"{shown} (and {more} more)" if more > 0 else shown
