"""Training checkpoints: everything needed to continue a run exactly, in safetensors and JSON (no pickles).

    checkpoints/step-N/
      adapter.safetensors      the adapter's weights (released key layout, float32)
      optimizer.safetensors    AdamW's per-parameter tensors; its param groups are in state.json
      rng-<process>.safetensors  torch CPU/CUDA generator states and the run's own generator, per process
      state.json               step, data position, scheduler, gradient scaler, Python/NumPy RNG; written last

A checkpoint is assembled in a hidden temporary folder and renamed into place, so `step-N/` is either complete or
absent; `RunFolder.checkpoints()` also requires `state.json`. Older checkpoints are pruned to the last K after a
new one is in place, so there is never a moment without a complete checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from facestudio.errors import TrainingError
from facestudio.files import write_atomic
from facestudio.training.run import CHECKPOINT_DONE_NAME, RunFolder

logger = logging.getLogger(__name__)

ADAPTER_FILE = "adapter.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
TEMP_PREFIX = ".tmp-step-"


@dataclass
class TrainingState:
    """Where a run is: optimizer steps done and samples consumed (the data position), plus small JSON states."""

    step: int
    samples_seen: int
    scheduler: dict = field(default_factory=dict)
    scaler: dict | None = None
    python_rng: list | None = None
    numpy_rng: list | None = None
    extra: dict = field(default_factory=dict)


# -- optimizer state <-> tensors + JSON ------------------------------------------------------------------------------


def _split_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors named `<param index>.<key>` (a nested dict's, such as bitsandbytes' 8-bit quantisation state, as
    `<param index>.<key>/<inner key>`), everything else in JSON with the param groups."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    seen: set[int] = set()  # bitsandbytes shares one quantile map between parameters; safetensors wants copies

    def split(values: dict, prefix: str, into: dict) -> None:
        for key, value in values.items():
            if torch.is_tensor(value):
                tensor = value.detach().to("cpu").contiguous()
                pointer = tensor.untyped_storage().data_ptr()
                tensors[f"{prefix}{key}"] = tensor.clone() if pointer in seen else tensor
                seen.add(pointer)
            elif isinstance(value, dict):
                split(value, f"{prefix}{key}/", inner := {})
                into[key] = inner
            else:
                into[key] = value

    for index, values in state_dict["state"].items():
        split(values, f"{index}.", scalars.setdefault(str(index), {}))
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}

    def merge(into: dict, values: dict) -> None:
        for key, value in values.items():
            if isinstance(value, dict):
                merge(into.setdefault(key, {}), value)
            else:
                into[key] = value

    for index, values in meta.get("scalars", {}).items():
        merge(state.setdefault(int(index), {}), values)
    for name, tensor in tensors.items():
        index, path = name.split(".", 1)
        *outer, key = path.split("/")
        into = state.setdefault(int(index), {})
        for part in outer:
            into = into.setdefault(part, {})
        into[key] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


# -- RNG states --------------------------------------------------------------------------------------------------------


def capture_rng(generator: torch.Generator) -> tuple[dict[str, torch.Tensor], list, list]:
    """(tensors, python state, numpy state) of every random stream a step can touch."""
    tensors = {"torch_cpu": torch.get_rng_state(), "run_generator": generator.get_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{index}"] = state
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return tensors, [version, list(internal), gauss], [kind, keys.tolist(), int(position), int(has_gauss),
                                                       float(cached)]


def restore_rng(generator: torch.Generator, tensors: dict[str, torch.Tensor], python_rng: list | None,
                numpy_rng: list | None) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    generator.set_state(tensors["run_generator"])
    if torch.cuda.is_available():
        states = [tensors[f"torch_cuda_{i}"] for i in range(torch.cuda.device_count()) if f"torch_cuda_{i}" in tensors]
        if states:
            torch.cuda.set_rng_state_all(states)
    if python_rng is not None:
        version, internal, gauss = python_rng
        random.setstate((version, tuple(internal), gauss))
    if numpy_rng is not None:
        kind, keys, position, has_gauss, cached = numpy_rng
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))


# -- save / load -------------------------------------------------------------------------------------------------------


def save_checkpoint(run: RunFolder, state: TrainingState, adapter_state: dict[str, torch.Tensor],
                    optimizer_state: dict, rng_tensors: dict[int, dict[str, torch.Tensor]], keep: int,
                    adapter_metadata: dict[str, str] | None = None) -> Path:
    """Write `checkpoints/step-<state.step>/` atomically, then prune to the newest `keep` checkpoints."""
    final = run.checkpoint_path(state.step)
    run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    temporary = run.checkpoints_dir / f"{TEMP_PREFIX}{state.step}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        tensors = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in adapter_state.items()}
        save_file(tensors, temporary / ADAPTER_FILE, metadata=adapter_metadata or {})
        optimizer_tensors, optimizer_meta = _split_optimizer_state(optimizer_state)
        save_file(optimizer_tensors, temporary / OPTIMIZER_FILE)
        for process, rng in rng_tensors.items():
            save_file({k: v.contiguous() for k, v in rng.items()}, temporary / f"rng-{process}.safetensors")
        record = {
            "step": state.step, "samples_seen": state.samples_seen, "scheduler": state.scheduler,
            "scaler": state.scaler, "python_rng": state.python_rng, "numpy_rng": state.numpy_rng,
            "optimizer": optimizer_meta, "extra": state.extra,
        }
        write_atomic(temporary / CHECKPOINT_DONE_NAME, json.dumps(record).encode("utf-8"))
        _fsync_folder(temporary)
        if final.exists():  # a step redone after a resume, or a half-written folder from a killed run
            shutil.rmtree(final)
        os.replace(temporary, final)
        _fsync_folder(run.checkpoints_dir)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    prune_checkpoints(run, keep)
    logger.info("Saved checkpoint %s", final)
    return final


def prune_checkpoints(run: RunFolder, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints, and leftovers of interrupted writes."""
    removed = []
    for _, path in run.checkpoints()[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if run.checkpoints_dir.is_dir():
        for leftover in run.checkpoints_dir.glob(f"{TEMP_PREFIX}*"):
            if not leftover.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(leftover, ignore_errors=True)
    return removed


def load_checkpoint(path: Path, process_index: int = 0) -> tuple[TrainingState, dict, dict, dict[str, torch.Tensor]]:
    """(state, adapter tensors, optimizer state dict, this process's RNG tensors) of a checkpoint folder."""
    try:
        record = json.loads((path / CHECKPOINT_DONE_NAME).read_text(encoding="utf-8"))
        adapter = load_file(path / ADAPTER_FILE)
        optimizer = _join_optimizer_state(load_file(path / OPTIMIZER_FILE), record["optimizer"])
        rng_file = path / f"rng-{process_index}.safetensors"
        rng = load_file(rng_file if rng_file.exists() else path / "rng-0.safetensors")
        state = TrainingState(step=int(record["step"]), samples_seen=int(record["samples_seen"]),
                              scheduler=record.get("scheduler") or {}, scaler=record.get("scaler"),
                              python_rng=record.get("python_rng"), numpy_rng=record.get("numpy_rng"),
                              extra=record.get("extra") or {})
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        raise TrainingError(f"The checkpoint {path} is damaged ({type(err).__name__}: {err}); delete it to resume "
                            "from the one before.") from err
    return state, adapter, optimizer, rng


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
