"""SHA-256 of model files and photos, cached by (path, size, mtime) so a 4 GB model is hashed once."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

from facestudio.files import sha256_file, write_atomic

logger = logging.getLogger(__name__)

# Files that define a diffusers folder's weights and behaviour; other files (README, images) do not count.
_FOLDER_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".json", ".txt")


class HashCache:
    """Hashes of files and folders, remembered in `<home>/hashes.json`.

    A folder's hash is the SHA-256 of its weight and config files' relative paths and hashes, so two copies of
    one diffusers model hash the same wherever they are.
    """

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict] | None = None

    def _load(self) -> dict[str, dict]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None and self.path.is_file():
                try:
                    self._entries = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    logger.warning("Ignoring the unreadable hash cache %s.", self.path)
        return self._entries

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            write_atomic(self.path, json.dumps(self._entries).encode())
        except OSError as err:
            logger.debug("Cannot write the hash cache %s: %s", self.path, err)

    def file(self, path: Path) -> str:
        path = Path(path).resolve()
        stat = path.stat()
        key = str(path)
        with self._lock:
            entry = self._load().get(key)
            if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
                return entry["sha256"]
        digest = sha256_file(path)
        with self._lock:
            self._load()[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
            self._save()
        return digest

    def folder(self, path: Path) -> str:
        path = Path(path).resolve()
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _FOLDER_SUFFIXES):
            digest.update(f"{file.relative_to(path).as_posix()}\0{self.file(file)}\n".encode())
        return digest.hexdigest()

    def of(self, path: Path) -> str:
        return self.folder(path) if Path(path).is_dir() else self.file(path)
