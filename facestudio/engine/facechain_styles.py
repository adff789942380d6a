"""FaceChain's style files -> FaceStudio presets (`facestudio presets import-facechain FOLDER`).

A FaceChain style is a JSON file with `name`, `img`, `model_id` (a ModelScope repository, or null for a style
without a LoRA), `revision`, `bin_file`, `multiplier_style`, `multiplier_human` and `add_prompt_style`. Each becomes
a preset in `FACESTUDIO_HOME/presets/` whose LoRA is a hub reference (`modelscope:owner/name/file@rev`), fetched
the first time the preset is used, at the style's multiplier (the release merges it at `multiplier_style`; a style without one gets the registry's `portrait-lora` there,
as the release does), with the release's text-to-image sampling. A file that is not such a style is skipped and reported by name; nothing else
is written for it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from facestudio.engine.registry import ModelRegistry
from facestudio.engine.requests import RELEASE_TEXT_TO_IMAGE
from facestudio.files import write_atomic

_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FILE = re.compile(r"^[\w.-]+\.safetensors$")
_REVISION = re.compile(r"^[\w.-]+$")
KEY_PREFIX = "facechain-"


@dataclass
class ImportReport:
    written: list[str] = field(default_factory=list)  # preset keys
    skipped: list[str] = field(default_factory=list)  # one sentence per skipped file


def style_to_preset(data: object, name: str) -> dict:
    """The preset JSON of one FaceChain style; `ValueError` (one sentence naming `name`) for anything else."""
    if not isinstance(data, dict):
        raise ValueError(f"{name} is not a FaceChain style (not a JSON object).")
    missing = [k for k in ("name", "add_prompt_style", "multiplier_style") if k not in data]
    if missing:
        raise ValueError(f"{name} is not a FaceChain style (no {', '.join(missing)}).")
    scale = data["multiplier_style"]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not -2.0 <= scale <= 2.0:
        raise ValueError(f"{name}: multiplier_style must be a number from -2 to 2; got {scale!r}.")
    preset = {
        "name": str(data["name"]),
        "prompt": "{prompt}, " + str(data["add_prompt_style"]).strip(),
        "steps": RELEASE_TEXT_TO_IMAGE["steps"], "cfg": RELEASE_TEXT_TO_IMAGE["cfg"],
        "width": RELEASE_TEXT_TO_IMAGE["width"], "height": RELEASE_TEXT_TO_IMAGE["height"],
        "face_strength": RELEASE_TEXT_TO_IMAGE["face_strength"], "scheduler": RELEASE_TEXT_TO_IMAGE["scheduler"],
        "description": "Imported from FaceChain's styles (the release's sampling; its LoRA at the style's multiplier).",
    }
    model_id = data.get("model_id")
    if model_id:
        file, revision = data.get("bin_file"), data.get("revision") or "master"
        if not isinstance(model_id, str) or not _REPO.match(model_id):
            raise ValueError(f"{name}: model_id {model_id!r} is not a ModelScope repository (owner/name).")
        if not isinstance(file, str) or not _FILE.match(file):
            raise ValueError(f"{name}: bin_file {file!r} must be a .safetensors file name inside {model_id}.")
        if not isinstance(revision, str) or not _REVISION.match(revision):
            raise ValueError(f"{name}: revision {revision!r} is not a revision name.")
        preset["lora"] = f"modelscope:{model_id}/{file}@{revision}"
    else:  # the release merges its default "portrait" LoRA at the style's multiplier instead
        preset["lora"] = ModelRegistry.default().default_for("style_lora")
    preset["lora_scale"] = float(scale)
    return preset


def preset_key(path: Path) -> str:
    return (KEY_PREFIX + re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-"))[:64]


def import_facechain_styles(folder: Path, presets_dir: Path) -> ImportReport:
    """Convert every `*.json` under `folder` (FaceChain keeps one subfolder per base model) into `presets_dir`."""
    report = ImportReport()
    Path(presets_dir).mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(folder).rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            preset = style_to_preset(data, path.name)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            report.skipped.append(f"{path.name} cannot be read as JSON ({type(err).__name__}).")
            continue
        except ValueError as err:
            report.skipped.append(str(err))
            continue
        key = preset_key(path)
        write_atomic(Path(presets_dir) / f"{key}.json", (json.dumps(preset, indent=2, ensure_ascii=False) + "\n")
                     .encode("utf-8"))
        report.written.append(key)
    return report
