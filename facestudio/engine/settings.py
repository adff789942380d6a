"""Where the studio keeps its files: `FACESTUDIO_HOME` (default `~/.cache/facestudio`)."""

from __future__ import annotations

import os
from pathlib import Path


def studio_home() -> Path:
    """The one folder for the model cache, hash cache, outputs and jobs; created on first write, not here."""
    configured = os.environ.get("FACESTUDIO_HOME", "").strip()
    return Path(configured).expanduser().resolve() if configured else Path.home() / ".cache" / "facestudio"
