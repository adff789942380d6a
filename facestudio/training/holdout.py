"""Which photos of a dataset a run keeps out of training, so that its adapter can be judged on faces it never saw.

The split depends only on the dataset's manifest, the `holdout` setting and the run's seed: each person's photos are
ordered by a hash of the seed and the photo's content, and the first N are held out. So the same run always gets
the same split (`--resume` included), whatever order the photos were prepared in. The run also writes its split
into RUN/holdout.json, which `evaluate` and the studio read back. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from facestudio.files import write_atomic
from facestudio.training.dataset import DatasetItem

logger = logging.getLogger(__name__)

#: With `holdout` unset, a person with at least this many photos has one of them held out (fewer photos are all
#: needed for training).
AUTO_MIN_PHOTOS = 4
HOLDOUT_FILE = "holdout.json"


@dataclass(frozen=True)
class HoldoutSplit:
    """The held-out items (by their image path in the dataset) and the setting that chose them."""

    holdout: int | None
    images: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"holdout": self.holdout, "images": list(self.images)}


def choose_holdout(items: Sequence[DatasetItem], holdout: int | None, seed: int) -> HoldoutSplit:
    """Hold out `holdout` photos of each person that has more than that (None: 1 of each person with at least
    `AUTO_MIN_PHOTOS` photos; 0: none). A person is never left without a training photo."""
    by_identity: dict[str, list[DatasetItem]] = {}
    for item in items:
        by_identity.setdefault(item.identity, []).append(item)
    held: list[str] = []
    for identity, photos in by_identity.items():
        count = (1 if len(photos) >= AUTO_MIN_PHOTOS else 0) if holdout is None else holdout
        if count and count >= len(photos):
            logger.warning("%s has %d photo(s): none is held out (holdout %d would leave none for training).",
                           identity, len(photos), count)
            continue
        ordered = sorted(photos, key=lambda item: hashlib.sha256(f"{seed}:{item.sha256}:{item.image}".encode())
                         .hexdigest())
        held.extend(item.image for item in ordered[:count])
    return HoldoutSplit(holdout, tuple(sorted(held)))


def write_split(run_root: Path, split: HoldoutSplit) -> None:
    write_atomic(run_root / HOLDOUT_FILE, json.dumps(split.to_dict(), indent=2).encode("utf-8"))


def read_split(run_root: Path) -> HoldoutSplit | None:
    """A run's recorded split, or None when it has none (or it is damaged: a warning, and the caller chooses
    again from the same settings, which gives the same split)."""
    path = run_root / HOLDOUT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise ValueError("it lists no images")
        holdout = data.get("holdout")
        if not all(isinstance(name, str) for name in data["images"]):
            raise ValueError("an image is not a name")
        if holdout is not None and (not isinstance(holdout, int) or isinstance(holdout, bool)):
            raise ValueError(f"holdout is {holdout!r}")
        images = tuple(data["images"])
    except (OSError, ValueError, RecursionError) as err:
        logger.warning("Ignoring the damaged %s (%s).", path.name, err)
        return None
    return HoldoutSplit(holdout, images)
