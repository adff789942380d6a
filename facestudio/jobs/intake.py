"""Photos a person hands the studio for training -> a prepared dataset in the studio home, ready for a job.

The studio's Train tab (and anything else that trains from a set of photos rather than a prepared folder) copies the
photos into `HOME/uploads/train/<stamp>-<name>/<name>/` (one identity), prepares them into
`HOME/datasets/<stamp>-<name>/` and then queues a job on that dataset. A folder given by path must lie inside the
studio home: a front must not let a remote user point the studio at arbitrary folders of the machine.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from facestudio.config import DEFAULT_MAX_PIXELS
from facestudio.errors import DatasetError
from facestudio.jobs.store import slugify
from facestudio.training.dataset import PHOTO_SUFFIXES, ItemCallback, PrepareReport, PrepareSettings, prepare_dataset

UPLOADS_DIR = "uploads"
DATASETS_DIR = "datasets"
MAX_TRAINING_PHOTOS = 200


def inside_home(home: Path, path: str | Path) -> Path:
    """`path` resolved, if it lies inside `home` (symlinks followed); `DatasetError` otherwise."""
    home = Path(home).resolve()
    resolved = Path(path).expanduser().resolve()
    if resolved != home and home not in resolved.parents:
        raise DatasetError(f"{path} is outside the studio's folder {home}; put the photos under it (for example in "
                           f"{home / 'photos'}) or upload them.")
    return resolved


def prepare_training_photos(home: Path, name: str, analyzer, settings: PrepareSettings, *,
                            photos: list[Path] | None = None, folder: str | Path | None = None,
                            on_item: ItemCallback | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> PrepareReport:
    """Prepare uploaded `photos` (one person) or a `folder` inside `home` into a new dataset under `home`; photos
    over `max_pixels` are rejected.

    Raises:
        `DatasetError`: no photos, too many, a non-photo file, or a folder outside `home`.
    """
    home = Path(home)
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{slugify(name)}"
    if photos and folder:
        raise DatasetError("Give either uploaded photos or a folder, not both.")
    if folder:
        source = inside_home(home, folder)
        if not source.is_dir():
            raise DatasetError(f"{folder} is not a folder.")
    elif photos:
        if len(photos) > MAX_TRAINING_PHOTOS:
            raise DatasetError(f"Upload at most {MAX_TRAINING_PHOTOS} photos; got {len(photos)}.")
        source = _unique(home / UPLOADS_DIR / "train" / stamp)
        person = source / slugify(name)
        person.mkdir(parents=True)
        for number, photo in enumerate(photos, start=1):
            photo = Path(photo)
            if photo.suffix.lower() not in PHOTO_SUFFIXES:
                shutil.rmtree(source, ignore_errors=True)
                raise DatasetError(f"{photo.name} is not a photo ({', '.join(PHOTO_SUFFIXES)}).")
            shutil.copyfile(photo, person / f"{number:03d}_{photo.name}")
    else:
        raise DatasetError("Upload photos of the person (or give a folder of photos inside the studio's folder).")
    out = _unique(home / DATASETS_DIR / stamp)
    return prepare_dataset(source, out, analyzer, settings, on_item=on_item, max_pixels=max_pixels)


def _unique(path: Path) -> Path:
    candidate, counter = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}-{counter}")
        counter += 1
    return candidate
