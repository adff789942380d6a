"""The studio's settings: one frozen `StudioSettings`, read from the environment once, by the entry points.

The entry points (`python -m facestudio`, `python app.py`, the trainer process `python -m
facestudio.training.train_fact`) call `StudioSettings.from_env()` and pass the object, or the values it holds, down.
Library code never reads these variables itself: each value arrives as a constructor argument or a function
parameter whose default is the documented one below. The job runner starts the trainer with `to_env()`, so the
trainer's process reads the same values its parent had.

| variable | field | default |
| --- | --- | --- |
| `FACESTUDIO_HOME` | `home` | `~/.cache/facestudio` |
| `FACESTUDIO_OFFLINE`, `HF_HUB_OFFLINE` | `offline` | off |
| `FACESTUDIO_MAX_PIXELS` | `max_pixels` | 64000000 |
| `FACESTUDIO_MAX_ZIP_BYTES` | `max_zip_bytes` | 2 GiB |
| `FACESTUDIO_INSIGHTFACE_ROOT` | `insightface_root` | `~/.insightface` |

Layer-neutral like `errors.py`: every layer may import it, and it imports nothing heavy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from facestudio.errors import SettingsError

HOME_VARIABLE = "FACESTUDIO_HOME"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "FACESTUDIO_OFFLINE")
MAX_PIXELS_VARIABLE = "FACESTUDIO_MAX_PIXELS"
MAX_ZIP_BYTES_VARIABLE = "FACESTUDIO_MAX_ZIP_BYTES"
INSIGHTFACE_ROOT_VARIABLE = "FACESTUDIO_INSIGHTFACE_ROOT"

#: The studio's folder: model cache, hash cache, jobs, identities, outputs, datasets, uploads, LoRAs.
DEFAULT_HOME = Path("~/.cache/facestudio")
#: Refuse images with more pixels than this before decoding them (a 12 MP phone photo is far below; a crafted
#: 100k x 100k PNG that would allocate 30 GB is far above).
DEFAULT_MAX_PIXELS = 64_000_000
#: Largest total uncompressed size of a photo .zip given to `prepare` (a zip bomb is refused before extracting).
DEFAULT_MAX_ZIP_BYTES = 2 * 1024**3
#: Where insightface model packs are looked for (`<root>/models/<pack>/`); the studio never downloads them.
DEFAULT_INSIGHTFACE_ROOT = Path("~/.insightface")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def parse_flag(name: str, value: str | None) -> bool:
    """The one reading of an on/off variable: 1/true/yes/on, or 0/false/no/off/unset; anything else is refused
    (a typo must not silently mean "off")."""
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"{name} must be 1, true, yes or on (or 0, false, no, off to turn it off); got {value!r}.")


def _positive_number(name: str, value: str | None, default: int, unit: str) -> int:
    text = (value or "").strip()
    if not text:
        return default
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:  # the text as the user typed it goes into the message
        raise SettingsError(f"{name} must be a whole number of {unit}, at least 1; got {value!r}.")
    return number


def _folder(value: str | None) -> Path | None:
    text = (value or "").strip()
    return Path(text).expanduser().resolve() if text else None


@dataclass(frozen=True)
class StudioSettings:
    """What the environment tells the studio, checked once.

    Args:
        home (`Path`, *optional*, defaults to `~/.cache/facestudio`): `FACESTUDIO_HOME`, the studio's folder.
        offline (`bool`, *optional*, defaults to `False`): `FACESTUDIO_OFFLINE` or `HF_HUB_OFFLINE`; only the model
            cache is read, nothing is downloaded.
        max_pixels (`int`, *optional*, defaults to 64000000): `FACESTUDIO_MAX_PIXELS`, the largest image accepted.
        max_zip_bytes (`int`, *optional*, defaults to 2 GiB): `FACESTUDIO_MAX_ZIP_BYTES`, the largest total
            uncompressed size of a photo .zip.
        insightface_root (`Path`, *optional*, defaults to `~/.insightface`): `FACESTUDIO_INSIGHTFACE_ROOT`, where
            insightface model packs are looked for.

    Raises:
        `SettingsError`: a value out of range; the message names its variable.
    """

    home: Path = DEFAULT_HOME
    offline: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES
    insightface_root: Path = DEFAULT_INSIGHTFACE_ROOT

    def __post_init__(self):
        # Normalised here so a str works as well as a Path and `~` always means the user's home.
        object.__setattr__(self, "home", Path(self.home).expanduser())
        object.__setattr__(self, "insightface_root", Path(self.insightface_root).expanduser())
        for name, value, unit in ((MAX_PIXELS_VARIABLE, self.max_pixels, "pixels"),
                                  (MAX_ZIP_BYTES_VARIABLE, self.max_zip_bytes, "bytes")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingsError(f"{name} must be a whole number of {unit}, at least 1; got {value!r}.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StudioSettings:
        """The settings the variables in `environ` (default: `os.environ`) give; unset or empty means the default.

        Example:
            ```py
            >>> StudioSettings.from_env({"FACESTUDIO_HOME": "/data/studio", "HF_HUB_OFFLINE": "1"}).offline
            True
            ```
        """
        env = os.environ if environ is None else environ
        return cls(
            home=_folder(env.get(HOME_VARIABLE)) or DEFAULT_HOME,
            offline=any([parse_flag(name, env.get(name)) for name in OFFLINE_VARIABLES]),  # both checked
            max_pixels=_positive_number(MAX_PIXELS_VARIABLE, env.get(MAX_PIXELS_VARIABLE), DEFAULT_MAX_PIXELS,
                                        "pixels"),
            max_zip_bytes=_positive_number(MAX_ZIP_BYTES_VARIABLE, env.get(MAX_ZIP_BYTES_VARIABLE),
                                           DEFAULT_MAX_ZIP_BYTES, "bytes"),
            insightface_root=_folder(env.get(INSIGHTFACE_ROOT_VARIABLE)) or DEFAULT_INSIGHTFACE_ROOT,
        )

    def to_env(self) -> dict[str, str]:
        """These settings as variables, for a child process that is an entry point itself (the job runner's
        trainer): `from_env(to_env())` gives the same settings. Both offline variables are written, so the hub
        clients in the child (which read `HF_HUB_OFFLINE` themselves) agree with the studio."""
        offline = "1" if self.offline else "0"
        return {HOME_VARIABLE: str(self.home), **{name: offline for name in OFFLINE_VARIABLES},
                MAX_PIXELS_VARIABLE: str(self.max_pixels), MAX_ZIP_BYTES_VARIABLE: str(self.max_zip_bytes),
                INSIGHTFACE_ROOT_VARIABLE: str(self.insightface_root)}


def hub_endpoint(hub: str) -> str:
    """Where a hub's client sends its requests, read as the client reads it (`HF_ENDPOINT`, `MODELSCOPE_DOMAIN`):
    the reachability probe before a download asks the same server."""
    if hub == "huggingface":
        return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    return os.environ.get("MODELSCOPE_DOMAIN") or "www.modelscope.cn"
