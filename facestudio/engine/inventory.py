"""What the studio has: each model's state (not downloaded / downloaded / loaded) and the machine's resources.

The `models` command and the studio's Models tab print the same rows. Reading the state never loads or downloads
anything, and never imports torch unless the engine already did (so a fresh studio page stays light).
"""

from __future__ import annotations

import json
import logging
import platform
import struct
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import psutil

from facestudio import __version__
from facestudio.engine.hub import DownloadCallback, ModelHub
from facestudio.engine.registry import ModelRegistry

logger = logging.getLogger(__name__)

NOT_DOWNLOADED, DOWNLOADED, LOADED = "not downloaded", "downloaded", "loaded"
LOCAL = "local file"
VERSIONED_PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "gradio", "mediapipe", "insightface")


@dataclass(frozen=True)
class ModelState:
    name: str
    kind: str
    title: str
    source: str
    size_bytes: int
    state: str
    path: str | None
    adapter: str | None
    default: bool

    @property
    def cached(self) -> bool:
        return self.state != NOT_DOWNLOADED

    def to_dict(self) -> dict:
        return {**asdict(self), "cached": self.cached}


#: Where a user puts model files by hand (no network, or their own models): `FACESTUDIO_HOME/models/local/`.
LOCAL_MODELS_DIR = ("models", "local")
#: Sub-folders of it that say the kind of what they hold; anything else is classified by `local_kind`.
LOCAL_KINDS = ("base_model", "fact_adapter", "face_encoder", "controlnet")
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
#: A single-file checkpoint at least this large is a whole base model (SD1.5: ~2 GB; a FACT adapter: ~1 GB).
BASE_MODEL_MIN_BYTES = 1_500_000_000


@dataclass(frozen=True)
class LocalModel:
    """A model file or folder found in `FACESTUDIO_HOME/models/local/`."""

    name: str
    kind: str
    path: Path
    size_bytes: int


def local_models_dir(home: Path) -> Path:
    return Path(home).joinpath(*LOCAL_MODELS_DIR)


def local_models(home: Path) -> list[LocalModel]:
    """The models a user dropped into `FACESTUDIO_HOME/models/local/` (also inside a sub-folder named by its kind,
    e.g. `local/fact_adapter/`), each with the kind `local_kind` gives it; what is no model is skipped with a
    warning. Reads file headers only."""
    folder = local_models_dir(home)
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and entry.name in LOCAL_KINDS:
            found += [LocalModel(f"{entry.name}/{item.name}", entry.name, item, size_of(item))
                      for item in sorted(entry.iterdir()) if item.is_dir() or item.suffix.lower() in MODEL_SUFFIXES]
            continue
        kind = local_kind(entry)
        if kind is None:
            logger.warning("models/local/%s is not a model file or folder; skipped.", entry.name)
            continue
        found.append(LocalModel(entry.name, kind, entry, size_of(entry)))
    return found


def local_kind(path: Path) -> str | None:
    """What a dropped file or folder is: a diffusers folder (`model_index.json` or `unet/`) is a base model, one with
    a ControlNet `config.json` a ControlNet; a file named like TransFace the face encoder; a file of at least
    `BASE_MODEL_MIN_BYTES`, or a `.safetensors` holding a UNet, a base model; other weight files a FACT adapter."""
    if path.is_dir():
        if (path / "model_index.json").is_file() or (path / "unet").is_dir():
            return "base_model"
        if "ControlNet" in _read_text(path / "config.json"):
            return "controlnet"
        return None
    if not path.is_file() or path.suffix.lower() not in MODEL_SUFFIXES:
        return None
    if "transface" in path.name.lower():
        return "face_encoder"
    if path.stat().st_size >= BASE_MODEL_MIN_BYTES:
        return "base_model"
    if path.suffix.lower() == ".safetensors" and any(key.startswith("model.diffusion_model.")
                                                     for key in _safetensors_keys(path)):
        return "base_model"
    return "fact_adapter"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")[:100_000] if path.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return ""


def _safetensors_keys(path: Path) -> list[str]:
    """The tensor names in a .safetensors header (8-byte length, then JSON), without reading the weights."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                return []
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return []
    return [key for key in header if key != "__metadata__"] if isinstance(header, dict) else []


def model_states(registry: ModelRegistry, hub: ModelHub, loaded: list[str] | None = None,
                 local: list[LocalModel] | None = None) -> list[ModelState]:
    """One row per registry model, one per model in `models/local/` (`local`), plus rows for loaded models that are
    neither (files given by path)."""
    loaded_specs = {entry.partition(":")[2] for entry in loaded or [] if ":" in entry}
    rows = []
    for record in registry.records.values():
        path = hub.cached_path(record)
        state = LOADED if record.key in loaded_specs else DOWNLOADED if path is not None else NOT_DOWNLOADED
        rows.append(ModelState(record.key, record.kind, record.title, record.hub_label, record.size_bytes, state,
                               str(path) if path else None, record.adapter,
                               registry.defaults.get(record.kind) == record.key))
    local_paths = set()
    for model in local or []:
        local_paths.add(str(model.path))
        state = LOADED if str(model.path) in loaded_specs else LOCAL
        rows.append(ModelState(model.name, model.kind, model.name, "models/local", model.size_bytes, state,
                               str(model.path), None, False))
    for entry in loaded or []:
        kind, _, spec = entry.partition(":")
        if spec and spec not in registry.records and spec not in local_paths:
            rows.append(ModelState(Path(spec).name, kind, spec, "local", size_of(Path(spec)), LOADED, spec, None,
                                   False))
    return rows


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file in a folder; 0 for what is neither."""
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


def download_model(registry: ModelRegistry, hub: ModelHub, name: str, progress: DownloadCallback | None = None
                   ) -> Path:
    """Fetch registry model `name` into the cache (resuming a partial download); its local path."""
    record = registry.get(name)
    return hub.cached_path(record) or hub.fetch(record, progress)


def system_report(device_name: str | None = None) -> dict:
    """Device, accelerator and RAM use, and versions. Reads torch's view only if torch is already imported."""
    memory = psutil.virtual_memory()
    report = {
        "device": device_name or "not chosen yet (models load on first use)",
        "ram_used_bytes": memory.total - memory.available,
        "ram_total_bytes": memory.total,
        "process_rss_bytes": psutil.Process().memory_info().rss,
        "gpus": [],
        "versions": {"facestudio": __version__, "python": platform.python_version()},
    }
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            report["gpus"].append({"name": torch.cuda.get_device_name(index), "used_bytes": int(total - free),
                                   "total_bytes": int(total),
                                   "allocated_by_studio_bytes": int(torch.cuda.memory_allocated(index))})
    for package in VERSIONED_PACKAGES:
        try:
            report["versions"][package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            report["versions"][package] = None
    return report
