"""SHA-256 of files: one implementation for every layer (model files, photos, dataset sources)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 8 * 2**20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
