"""Files shipped inside the package: the built-in style presets (`presets/`) and the pictures the studio shows
(`assets/`: the presets' thumbnail cards). Found through the package (importlib.resources), so an installed copy
finds them as a checkout does, from any working directory."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _folder(name: str) -> Path:
    folder = resources.files(__name__).joinpath(name)
    # Presets are globbed and gradio serves thumbnails from a folder: both need a real directory, which every pip
    # install gives (only a zipped import, which pip never makes, would not).
    if not isinstance(folder, Path):
        raise RuntimeError(f"facestudio's data files must be on disk, not in {folder}.")
    return folder


def presets_dir() -> Path:
    """The built-in style presets (JSON; format in `presets/README.md`)."""
    return _folder("presets")


def assets_dir() -> Path:
    """Pictures the studio serves: `presets/<key>.png`, the preset thumbnails (a preset's `thumbnail` is relative
    to this folder)."""
    return _folder("assets")
