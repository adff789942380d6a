"""Style presets: small JSON files that fill a generation request's prompt and settings. The built-in ones ship in
`facestudio/data/presets/` (thumbnails under `facestudio/data/assets/`); a user's own live in
`FACESTUDIO_HOME/presets/` (thumbnails and LoRAs beside them) and are shown with them.

A preset is data, not code: a name, a prompt template with `{prompt}` where the user's words go, a negative
prompt, recommended steps / CFG / size / face strength, an optional style LoRA and a thumbnail.
Every preset is checked when it is loaded with the same rules as a request (`GenerateRequest.check`), so a preset
that loads always gives a valid request, and a broken file is reported by name instead of failing a generation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestudio.engine.requests import GenerateRequest
from facestudio.errors import InvalidRequestError

logger = logging.getLogger(__name__)

PRESET_SUFFIX = ".json"
PROMPT_SLOT = "{prompt}"
#: What `{prompt}` becomes when the user typed nothing.
DEFAULT_SUBJECT = "a person"
_KEY_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_FIELDS = ("name", "prompt", "negative_prompt", "steps", "cfg", "width", "height", "face_strength", "lora",
           "lora_scale", "thumbnail", "description", "scheduler")
_REQUIRED = ("name", "prompt")


@dataclass(frozen=True)
class StylePreset:
    """One style: `key` is the file's stem; `thumbnail` and `lora` are resolved paths (or None)."""

    key: str
    name: str
    prompt: str
    negative_prompt: str
    steps: int
    cfg: float
    width: int
    height: int
    face_strength: float
    lora: Path | str | None = None  # a file beside the preset, or a hub reference fetched on first use
    lora_scale: float = 0.8
    thumbnail: Path | None = None
    description: str = ""
    scheduler: str | None = None  # a sampler of its own (the "FaceChain release" preset: PNDM); None keeps the request's

    def render_prompt(self, user_prompt: str | None) -> str:
        """The preset's prompt with the user's words in the `{prompt}` slot."""
        subject = (user_prompt or "").strip() or DEFAULT_SUBJECT
        return self.prompt.replace(PROMPT_SLOT, subject)

    def apply(self, request: GenerateRequest, user_prompt: str | None = None) -> GenerateRequest:
        """A copy of `request` with this preset's prompt and recommended settings (faces, seed, models kept)."""
        return dataclasses.replace(
            request, prompt=self.render_prompt(user_prompt), negative_prompt=self.negative_prompt, steps=self.steps,
            cfg=self.cfg, width=self.width, height=self.height, face_strength=self.face_strength,
            lora=None if self.lora is None else str(self.lora), lora_scale=self.lora_scale,
            scheduler=self.scheduler or request.scheduler,
        )


def load_preset(path: Path, assets: Path | None = None) -> StylePreset:
    """Read and check one preset file; `InvalidRequestError` names the file and the problem."""
    path = Path(path)
    key = path.stem
    if not _KEY_PATTERN.fullmatch(key):
        raise InvalidRequestError(f"Preset file {path.name}: the name must be lowercase letters, digits, - or _.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InvalidRequestError(f"Preset file {path.name} cannot be read as JSON ({err}).") from err
    if not isinstance(data, dict):
        raise InvalidRequestError(f"Preset file {path.name} must hold a JSON object.")
    unknown = sorted(set(data) - set(_FIELDS))
    missing = [name for name in _REQUIRED if not data.get(name)]
    if unknown or missing:
        problem = f"unknown fields {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
        raise InvalidRequestError(f"Preset file {path.name}: {problem}.")
    if PROMPT_SLOT not in str(data["prompt"]):
        raise InvalidRequestError(f"Preset file {path.name}: the prompt must contain {PROMPT_SLOT} for the user's "
                                  "words.")
    defaults = GenerateRequest(faces=("-",), prompt="-")
    values: dict[str, Any] = {name: data.get(name, getattr(defaults, name)) for name in
                              ("negative_prompt", "steps", "cfg", "width", "height", "face_strength", "lora_scale")}
    scheduler = data.get("scheduler")
    try:
        checked = GenerateRequest(faces=("-",), prompt=str(data["prompt"]), **values,
                                  scheduler=str(scheduler or defaults.scheduler)).checked()
    except InvalidRequestError as err:
        raise InvalidRequestError(f"Preset file {path.name}: {err}") from None
    return StylePreset(
        key=key, name=str(data["name"]), prompt=str(data["prompt"]), **values,
        lora=_lora(path, data.get("lora")),
        thumbnail=_resolve(assets if assets is not None else path.parent, data.get("thumbnail"), path, "thumbnail"),
        description=str(data.get("description", "")),
        scheduler=checked.scheduler if scheduler else None,
    )


def _lora(path: Path, value: Any) -> Path | str | None:
    """A preset's LoRA: a `.safetensors` file in the preset's folder, a hub reference to one
    (`modelscope:owner/name/file.safetensors@rev`, as `presets import-facechain` writes) or a registry LoRA key."""
    from facestudio.engine.registry import ModelRegistry, is_remote_lora, resolve_source
    from facestudio.errors import UnknownModelError

    registry = ModelRegistry.default()
    if not is_remote_lora(value, registry):
        return _resolve(path.parent, value, path, "lora")
    try:
        record = resolve_source(str(value), "lora", registry).hub_record
    except UnknownModelError as err:
        raise InvalidRequestError(f"Preset file {path.name}: the lora {value!r} is not a hub reference ({err})") from None
    if not str(record.file or "").lower().endswith(".safetensors"):
        raise InvalidRequestError(f"Preset file {path.name}: the lora {value!r} must name a .safetensors file in "
                                  "its repository.")
    return str(value)


def _resolve(folder: Path, relative: Any, path: Path, what: str) -> Path | None:
    """A file named by a preset, inside `folder` only (a preset from elsewhere must not point anywhere)."""
    if relative in (None, ""):
        return None
    if not isinstance(relative, str) or "\x00" in relative or len(relative) > 255:
        raise InvalidRequestError(f"Preset file {path.name}: the {what} must be a file name.")
    candidate = (folder / relative).resolve()
    if not candidate.is_relative_to(folder.resolve()):
        raise InvalidRequestError(f"Preset file {path.name}: the {what} {relative!r} lies outside the presets' "
                                  "folder.")
    if not candidate.is_file():
        raise InvalidRequestError(f"Preset file {path.name}: the {what} {relative!r} does not exist next to it.")
    return candidate


def load_presets(folder: Path, assets: Path | None = None) -> tuple[list[StylePreset], list[str]]:
    """Every preset in `folder`, sorted by name, and one message per file that could not be loaded (a broken
    preset is left out, never fatal)."""
    presets, problems = [], []
    for path in sorted(Path(folder).glob(f"*{PRESET_SUFFIX}")):
        try:
            presets.append(load_preset(path, assets))
        except InvalidRequestError as err:
            problems.append(str(err))
        except Exception as err:  # whatever is in the file, the studio starts without it
            problems.append(f"Preset file {path.name} cannot be loaded ({type(err).__name__}).")
    return sorted(presets, key=lambda p: p.name.lower()), problems


def user_presets_dir(home: Path) -> Path:
    """Where a user adds presets of their own: `FACESTUDIO_HOME/presets`."""
    return Path(home) / "presets"


def load_preset_library(builtin: Path, assets: Path, user: Path) -> tuple[list[StylePreset], list[str]]:
    """The built-in presets (thumbnails in `assets`) and the user's (`user`: thumbnails and LoRAs relative to it),
    sorted by name, and one message per file that could not be loaded. A user preset whose key is a built-in one
    replaces it (logged), so a shipped style can be adjusted without editing the package."""
    presets, problems = load_presets(builtin, assets)
    if not Path(user).is_dir():
        return presets, problems
    own, own_problems = load_presets(user)
    by_key = {preset.key: preset for preset in presets}
    for preset in own:
        if preset.key in by_key:
            logger.info("the preset %s in %s replaces the built-in one", preset.key, user)
        by_key[preset.key] = preset
    return sorted(by_key.values(), key=lambda p: p.name.lower()), problems + own_problems


#: A user's own preset thumbnails ("use as thumbnail" in the studio): `FACESTUDIO_HOME/thumbnails/<key>.png`.
THUMBNAILS_DIRNAME = "thumbnails"
#: Longest side of a saved thumbnail: the cards are shown at about 100 px, so a full-size result is not kept twice.
THUMBNAIL_SIZE_PX = 256


def user_thumbnails_dir(home: Path) -> Path:
    return Path(home) / THUMBNAILS_DIRNAME


def save_user_thumbnail(home: Path, key: str, source: Path, max_pixels: int | None = None) -> Path:
    """Save `source` (a result) as the card of preset `key`: re-encoded as a small PNG without metadata, so the
    card carries no settings or file paths of the result. Replaces an earlier one."""
    from facestudio.face.image import DEFAULT_MAX_PIXELS, load_image

    if not _KEY_PATTERN.fullmatch(str(key)):
        raise InvalidRequestError(f"There is no style preset {str(key)[:40]!r} to give a thumbnail.")
    image = load_image(source, name=Path(source).name, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    image.thumbnail((THUMBNAIL_SIZE_PX, THUMBNAIL_SIZE_PX))
    folder = user_thumbnails_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{key}.png"
    partial = target.with_suffix(".tmp")
    image.save(partial, format="PNG")
    partial.replace(target)  # a reader never sees half a file
    return target


def user_thumbnail(home: Path, key: str, problems: list[str] | None = None) -> Path | None:
    """The user's card for preset `key` if there is one that opens as an image; a damaged file is skipped with a
    warning, logged and added to `problems` (the drawn card is shown instead), never an error on the page."""
    from PIL import Image  # PIL alone: the page is built before the face package (and OpenCV) is imported

    path = user_thumbnails_dir(home) / f"{key}.png"
    if not path.is_file():
        return None
    try:
        with Image.open(path) as image:
            if image.width * image.height > 4 * THUMBNAIL_SIZE_PX * THUMBNAIL_SIZE_PX:
                raise ValueError(f"{image.width}x{image.height} is larger than a thumbnail")
            image.load()  # decodes every byte: a truncated file fails here
    except Exception as err:  # whatever is wrong with the file, the drawn card still works
        logger.warning("thumbnail %s skipped, the drawn card is shown instead: %s", path.name, err)
        if problems is not None:
            problems.append(f"The thumbnail {THUMBNAILS_DIRNAME}/{path.name} cannot be read; the drawn card is "
                            "shown instead.")
        return None
    return path
