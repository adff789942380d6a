"""Photos a person hands the studio for training -> a queued job that prepares them itself.

The studio's Train tab (and anything else that trains from a set of photos rather than a prepared folder) queues
the job at once: uploaded photos are copied into it (`JOB/photos/<name>/`, one person); a folder given by path is
used where it is, and must lie inside the studio home: a front must not let a remote user point the studio at
arbitrary folders of the machine. Checking and cropping the photos is the job's first stage, in its own process
(`facestudio.training.train_fact.prepare_photos`), so the click never waits for a face detector or the GPU.
"""

from __future__ import annotations

from pathlib import Path

from facestudio.errors import DatasetError
from facestudio.jobs.lock import jobs_dir
from facestudio.jobs.store import Job, JobStore
from facestudio.training.config import TrainConfig
from facestudio.training.dataset import PHOTO_SUFFIXES

MAX_TRAINING_PHOTOS = 200


def inside_home(home: Path, path: str | Path) -> Path:
    """`path` resolved, if it lies inside `home` (symlinks followed); `DatasetError` otherwise."""
    home = Path(home).resolve()
    resolved = Path(path).expanduser().resolve()
    if resolved != home and home not in resolved.parents:
        raise DatasetError(f"{path} is outside the studio's folder {home}; put the photos under it (for example in "
                           f"{home / 'photos'}) or upload them.")
    return resolved


def submit_photo_job(store: JobStore, config: TrainConfig, name: str, *, photos: list[Path] | None = None,
                     folder: str | Path | None = None, owner: str | None = None, processes: int = 1) -> Job:
    """Queue a job that prepares uploaded `photos` (one person) or a `folder` inside the store's home, then trains
    with `config` (its `dataset` is the job's own), as `owner`'s job (`Job.owner`), on `processes` processes
    (torchrun, one per GPU). Only files are checked and copied here.

    Raises:
        `DatasetError`: no photos, too many, a non-photo file, or a folder outside the home (or holding its jobs).
    """
    if photos and folder:
        raise DatasetError("Give either uploaded photos or a folder, not both.")
    if folder:
        source = inside_home(store.home, folder)
        if not source.is_dir():
            raise DatasetError(f"{folder} is not a folder.")
        jobs = jobs_dir(store.home).resolve()
        if source == jobs or source in jobs.parents:
            raise DatasetError(f"{folder} holds the studio's jobs; give a folder of photos (for example "
                               f"{Path(store.home) / 'photos' / 'alex'}).")
        if not any(path.suffix.lower() in PHOTO_SUFFIXES for path in source.rglob("*") if path.is_file()):
            raise DatasetError(f"{folder} holds no photos ({', '.join(PHOTO_SUFFIXES)}).")
        return store.submit_training(config, name, photo_folder=source, owner=owner, processes=processes)
    if not photos:
        raise DatasetError("Upload photos of the person (or give a folder of photos inside the studio's folder).")
    if len(photos) > MAX_TRAINING_PHOTOS:
        raise DatasetError(f"Upload at most {MAX_TRAINING_PHOTOS} photos; got {len(photos)}.")
    for photo in photos:
        if Path(photo).suffix.lower() not in PHOTO_SUFFIXES:
            raise DatasetError(f"{Path(photo).name} is not a photo ({', '.join(PHOTO_SUFFIXES)}).")
    return store.submit_training(config, name, photos=[Path(photo) for photo in photos], owner=owner, processes=processes)
