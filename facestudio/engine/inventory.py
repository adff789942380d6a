"""What the studio has: each model's state (not downloaded / downloaded / loaded) and the machine's resources.

The `models` command and the studio's Models tab print the same rows. Reading the state never loads or downloads
anything, and never imports torch unless the engine already did (so a fresh studio page stays light).
"""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import psutil

from facestudio import __version__
from facestudio.engine.hub import DownloadCallback, ModelHub
from facestudio.engine.registry import ModelRegistry

NOT_DOWNLOADED, DOWNLOADED, LOADED = "not downloaded", "downloaded", "loaded"
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


def model_states(registry: ModelRegistry, hub: ModelHub, loaded: list[str] | None = None) -> list[ModelState]:
    """One row per registry model, plus rows for loaded models that are not in the registry (local files)."""
    loaded_specs = {entry.partition(":")[2] for entry in loaded or [] if ":" in entry}
    rows = []
    for record in registry.records.values():
        path = hub.cached_path(record)
        state = LOADED if record.key in loaded_specs else DOWNLOADED if path is not None else NOT_DOWNLOADED
        rows.append(ModelState(record.key, record.kind, record.title, record.hub_label, record.size_bytes, state,
                               str(path) if path else None, record.adapter,
                               registry.defaults.get(record.kind) == record.key))
    for entry in loaded or []:
        kind, _, spec = entry.partition(":")
        if spec and spec not in registry.records:
            rows.append(ModelState(Path(spec).name, kind, spec, "local", _size_of(Path(spec)), LOADED, spec, None,
                                   False))
    return rows


def _size_of(path: Path) -> int:
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
