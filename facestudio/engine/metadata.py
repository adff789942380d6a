"""Generation parameters stored in each PNG, so an image can be regenerated bit-for-bit from the file alone.

Two text chunks: `facestudio` holds the full JSON record (request, seed, models with SHA-256, reference photos with
SHA-256, similarity, versions); `parameters` holds the same essentials in the plain-text form other Stable
Diffusion tools show ("Steps: 30, Sampler: ..., Seed: ...").
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from facestudio.errors import MetadataError
from facestudio.files import write_atomic

METADATA_KEY = "facestudio"
METADATA_FORMAT = 1


def parameters_text(record: dict[str, Any]) -> str:
    """The A1111-style summary line block, for other tools and quick reading."""
    request = record["request"]
    lines = [request["prompt"]]
    if request.get("negative_prompt"):
        lines.append(f"Negative prompt: {request['negative_prompt']}")
    fields = {
        "Steps": request["steps"],
        "Sampler": record.get("scheduler_title", request["scheduler"]),
        "CFG scale": request["cfg"],
        "Seed": record["seed"],
        "Size": f"{record['width']}x{record['height']}",
        "Model": record["models"]["base_model"]["spec"],
        "Model hash": record["models"]["base_model"]["sha256"][:10],
        "Face strength": request["face_strength"],
    }
    if request.get("lora"):
        fields["Lora"] = f"{Path(request['lora']).name}:{request['lora_scale']}"
    if request["mode"] == "inpaint":
        fields["Denoising strength"] = request["denoise"]
    lines.append(", ".join(f"{k}: {v}" for k, v in fields.items()))
    return "\n".join(lines)


def save_png(image: Image.Image, path: Path, record: dict[str, Any]) -> Path:
    """Write `image` with `record` in its text chunks, atomically (a crash never leaves half a PNG)."""
    info = PngImagePlugin.PngInfo()
    info.add_text(METADATA_KEY, json.dumps({"format": METADATA_FORMAT, **record}, sort_keys=True))
    info.add_text("parameters", parameters_text(record))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return write_atomic(path, buffer.getvalue())


def read_png_record(path: str | Path) -> dict[str, Any]:
    """The `facestudio` record of a PNG written by `save_png`.

    Raises:
        `MetadataError`: not a readable PNG, or it has no (or a damaged) FaceStudio record.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image_format = image.format
            text = dict(getattr(image, "text", {}) or {})
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise MetadataError(f"{path.name} cannot be read as an image: {err}.") from err
    if image_format != "PNG":
        raise MetadataError(f"{path.name} is a {image_format or 'non-image'} file; --from-png needs a PNG "
                            "saved by FaceStudio.")
    if METADATA_KEY not in text:
        raise MetadataError(f"{path.name} carries no FaceStudio generation parameters (was it saved by FaceStudio, "
                            "and not re-saved by another program?).")
    try:
        record = json.loads(text[METADATA_KEY])
    except ValueError as err:
        raise MetadataError(f"{path.name} has damaged FaceStudio parameters: {err}.") from err
    if not isinstance(record, dict) or "request" not in record or "seed" not in record:
        raise MetadataError(f"{path.name} has incomplete FaceStudio parameters (no request or seed).")
    if record.get("format", 0) > METADATA_FORMAT:
        raise MetadataError(f"{path.name} was written by a newer FaceStudio (format {record['format']}); update "
                            "FaceStudio to regenerate it.")
    return record
