"""Downloads from Hugging Face and ModelScope into one cache under `FACESTUDIO_HOME`, with the size told first.

Each hub's own client does the transfer, so partial files resume where they stopped and finished files are
verified by the hub's cache. Files are fetched one at a time so progress is reported in bytes through one
callback (`DownloadEvent`), which the command line draws with tqdm and the UI with its progress bar.

Nothing here runs unless a user asks to generate or to download. Offline (`ModelHub(offline=True)`; the fronts pass
`StudioSettings.offline`, i.e. `HF_HUB_OFFLINE=1` or `FACESTUDIO_OFFLINE=1`), only the cache is read, and a missing
file is a `ModelNotAvailableError` that names it and says how to get it.
"""

from __future__ import annotations

import fnmatch
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from facestudio.engine.registry import ModelRecord
from facestudio.errors import DownloadError, ModelNotAvailableError

logger = logging.getLogger(__name__)

# What a folder needs before it counts as cached (a half-finished snapshot does not).
_REQUIRED_PARTS = {
    "base_model": ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
    "controlnet": ("config.json",),
    "pipeline_config": ("model_index.json", "tokenizer"),
    "clip": ("config.json", "preprocessor_config.json", "model.safetensors"),
}


#: How long `ModelHub.reachable` waits for a hub to answer a connection before calling it unreachable.
PROBE_SECONDS = 3.0


def hub_address(hub: str) -> tuple[str, int]:
    """(host, port) of a hub's API, as its own client reads it: `HF_ENDPOINT` for Hugging Face, `MODELSCOPE_DOMAIN`
    for ModelScope (a host or a URL; defaults huggingface.co and www.modelscope.cn)."""
    from urllib.parse import urlsplit

    from facestudio.config import hub_endpoint

    endpoint = hub_endpoint(hub)
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    parts = urlsplit(endpoint)
    return parts.hostname or endpoint, parts.port or (80 if parts.scheme == "http" else 443)


def format_bytes(size: int | None) -> str:
    if not size:
        return "unknown size"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


@dataclass(frozen=True)
class DownloadEvent:
    """Progress of one model's download: bytes done of the bytes this download fetches."""

    model: str
    filename: str
    done_bytes: int
    total_bytes: int
    finished: bool = False


DownloadCallback = Callable[[DownloadEvent], None]


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size_bytes: int | None
    cached: bool


@dataclass(frozen=True)
class DownloadPlan:
    """What `fetch` would transfer for one record, asked of the hub (`exact`) or estimated from the registry."""

    record: ModelRecord
    files: tuple[RemoteFile, ...]
    exact: bool

    @property
    def missing_bytes(self) -> int:
        if not self.exact:
            return self.record.size_bytes
        return sum(f.size_bytes or 0 for f in self.files if not f.cached)

    @property
    def missing_files(self) -> tuple[RemoteFile, ...]:
        return tuple(f for f in self.files if not f.cached)

    def describe(self) -> str:
        size = format_bytes(self.missing_bytes)
        return f"{self.record.key} ({self.record.hub_label}): {size if self.exact else 'about ' + size} to download"


def _wanted(path: str, record: ModelRecord) -> bool:
    if record.file is not None:
        return path == record.file
    return not record.allow_patterns or any(fnmatch.fnmatch(path, pattern) for pattern in record.allow_patterns)


class ModelHub:
    """The download cache: `<home>/models/huggingface` and `<home>/models/modelscope` in each hub's own layout."""

    def __init__(self, home: Path, offline: bool = False):
        self.home = Path(home)
        self.offline = offline
        self._reachable: dict[str, bool] = {}

    def reachable(self, hub: str) -> bool:
        """Whether `hub` answers a connection within `PROBE_SECONDS` (asked once per hub and `ModelHub`): without a
        network, a plan falls back to the registry's estimate at once instead of after the hub client's retries."""
        if self.offline:
            return False
        if hub not in self._reachable:
            host, port = hub_address(hub)
            try:
                with socket.create_connection((host, port), timeout=PROBE_SECONDS):
                    self._reachable[hub] = True
            except OSError as err:
                logger.debug("%s (%s:%s) cannot be reached: %s", hub, host, port, err)
                self._reachable[hub] = False
        return self._reachable[hub]

    def cache_dir(self, hub: str) -> Path:
        return self.home / "models" / hub

    # ------------------------------------------------------------------------------------------------ cache

    def cached_path(self, record: ModelRecord) -> Path | None:
        """The model's file or folder if the cache has all of it, else `None`. Never touches the network."""
        root = self.cached_path_root(record)
        if root is None:
            return None
        target = root / record.file if record.file else root / record.subfolder if record.subfolder else root
        if not target.exists() or (target.is_dir() and not all((target / part).exists()
                                                               for part in _REQUIRED_PARTS.get(record.kind, ()))):
            return None
        return target

    def _local_root(self, record: ModelRecord) -> Path | None:
        cache = str(self.cache_dir(record.hub))
        if record.hub == "huggingface":
            from huggingface_hub import hf_hub_download, snapshot_download

            if record.file:
                return Path(hf_hub_download(record.repo, record.file, revision=record.revision, cache_dir=cache,
                                            local_files_only=True)).parent.joinpath(
                    *[".."] * record.file.count("/")).resolve()
            return Path(snapshot_download(record.repo, revision=record.revision, cache_dir=cache,
                                          allow_patterns=list(record.allow_patterns) or None, local_files_only=True))
        if not (Path(cache) / record.repo.split("/")[0]).is_dir():
            return None  # nothing of this owner cached: no need to import modelscope (which imports torch)
        from modelscope.hub.snapshot_download import snapshot_download as ms_snapshot

        patterns = [record.file] if record.file else list(record.allow_patterns) or None
        return Path(ms_snapshot(record.repo, revision=record.revision, cache_dir=cache, allow_patterns=patterns,
                                local_files_only=True))

    # ------------------------------------------------------------------------------------------------ plan

    def plan(self, record: ModelRecord) -> DownloadPlan:
        """Ask the hub which files `fetch` needs and their sizes; offline or unreachable, estimate."""
        if self.offline or not self.reachable(record.hub):
            return DownloadPlan(record, (), exact=False)
        try:
            files = self._remote_files(record)
        except Exception as err:  # no network or hub error: the plan falls back to the registry's estimate
            logger.info("Cannot list %s (%s); using the registry's size estimate.", record.hub_label, err)
            return DownloadPlan(record, (), exact=False)
        return DownloadPlan(record, tuple(files), exact=True)

    def _remote_files(self, record: ModelRecord) -> list[RemoteFile]:
        cache = str(self.cache_dir(record.hub))
        if record.hub == "huggingface":
            from huggingface_hub import hf_hub_download, snapshot_download

            if record.file:
                infos = [hf_hub_download(record.repo, record.file, revision=record.revision, cache_dir=cache,
                                         dry_run=True)]
            else:
                infos = snapshot_download(record.repo, revision=record.revision, cache_dir=cache,
                                          allow_patterns=list(record.allow_patterns) or None, dry_run=True)
            return [RemoteFile(info.filename, info.file_size, info.is_cached) for info in infos]
        from modelscope.hub.api import HubApi

        listing = HubApi().get_model_files(record.repo, revision=record.revision, recursive=True)
        root = None
        files = []
        for entry in listing:
            path = entry.get("Path") or entry.get("Name")
            if entry.get("Type") == "tree" or not path or not _wanted(path, record):
                continue
            if root is None:
                root = self.cached_path_root(record)
            cached = root is not None and (root / path).is_file()
            files.append(RemoteFile(path, entry.get("Size"), cached))
        return files

    def cached_path_root(self, record: ModelRecord) -> Path | None:
        """The snapshot folder the hub client has for `record`, or `None`; reads the cache only."""
        try:
            return self._local_root(record)
        except Exception as err:  # each hub client signals "not cached" with its own exception types
            logger.debug("%s not in the cache: %s", record.key, err)
            return None

    # ------------------------------------------------------------------------------------------------ fetch

    def fetch(self, record: ModelRecord, progress: DownloadCallback | None = None,
              plan: DownloadPlan | None = None) -> Path:
        """The model's local path, downloading what is missing (resuming partial files).

        Raises:
            `ModelNotAvailableError`: not cached and offline.
            `DownloadError`: the hub refused or the transfer failed; partial files are kept for a resume.
        """
        cached = self.cached_path(record)
        if cached is not None and (plan is None or not plan.missing_files):
            return cached
        if self.offline:
            raise self.not_available(record, "downloads are off (HF_HUB_OFFLINE or FACESTUDIO_OFFLINE is set)")
        plan = plan if plan is not None and plan.exact else self.plan(record)
        if not plan.exact:
            raise self.not_available(record, f"{record.hub_label} cannot be reached")
        total = plan.missing_bytes
        done = 0
        logger.info("Downloading %s", plan.describe())
        for remote in plan.missing_files:
            self._fetch_file(record, remote.path, progress, done, total)
            done += remote.size_bytes or 0
        if progress is not None:
            progress(DownloadEvent(record.key, "", total, total, finished=True))
        path = self.cached_path(record)
        if path is None:
            raise DownloadError(f"Downloaded {record.hub_label}, but the expected files are not in the cache at "
                                f"{self.cache_dir(record.hub)}; the repository layout may have changed.")
        return path

    def _fetch_file(self, record: ModelRecord, filename: str, progress: DownloadCallback | None, done: int,
                    total: int) -> None:
        cache = str(self.cache_dir(record.hub))
        try:
            if record.hub == "huggingface":
                from huggingface_hub import hf_hub_download

                hf_hub_download(record.repo, filename, revision=record.revision, cache_dir=cache,
                                tqdm_class=_forwarding_tqdm(progress, record.key, filename, done, total))
            else:
                from modelscope.hub.file_download import model_file_download

                callbacks = [_modelscope_callback(progress, record.key, done, total)] if progress else None
                model_file_download(record.repo, filename, revision=record.revision, cache_dir=cache,
                                    progress_callbacks=callbacks)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # network, disk or hub error from a third-party client
            raise DownloadError(
                f"Downloading {filename} of {record.hub_label} failed ({type(err).__name__}: {err}); run the same "
                "command again to resume."
            ) from err

    def not_available(self, record: ModelRecord, why: str) -> ModelNotAvailableError:
        size = format_bytes(record.size_bytes)
        what = record.file or (record.subfolder or record.repo)
        return ModelNotAvailableError(
            f"The {record.kind.replace('_', ' ')} {record.key!r} ({what} from {record.hub_label}, about {size}) is not "
            f"in the cache at {self.cache_dir(record.hub)} and {why}; run `python -m facestudio download "
            f"{record.key}` where there is internet access, or pass a local file or folder instead."
        )


def _forwarding_tqdm(callback: DownloadCallback | None, model: str, filename: str, done: int,
                     total: int) -> type[tqdm]:
    """A tqdm class for huggingface_hub that also reports bytes to `callback` (quiet when there is none)."""

    class ForwardingTqdm(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._seen = 0

        def update(self, n: int | None = 1) -> bool | None:
            self._seen += n or 0
            if callback is not None:
                callback(DownloadEvent(model, filename, min(done + self._seen, total), total))
            return super().update(n)

    return ForwardingTqdm


def _modelscope_callback(callback: DownloadCallback, model: str, done: int, total: int) -> type:
    from modelscope.hub.callback import ProgressCallback

    class ForwardingCallback(ProgressCallback):
        def __init__(self, filename: str, file_size: int):
            super().__init__(filename, file_size)
            self._seen = 0

        def update(self, size: int) -> None:
            self._seen += size
            callback(DownloadEvent(model, self.filename, min(done + self._seen, total), total))

    return ForwardingCallback
