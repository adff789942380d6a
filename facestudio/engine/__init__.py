"""The engine: model manager, downloads, and identity-preserving pipelines over diffusers.

Layering: uses `facestudio.face` and `facestudio.fact`; the fronts (CLI, UI) use only this package's public API.

The names below are imported on first use (PEP 562): `from facestudio.engine.requests import GenerateRequest` or
`facestudio.engine.ModelRegistry` must not pay for torch and diffusers, so the command line and the web page start
in well under a second when they do not generate.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "DevicePlacement": "devices", "select_device": "devices",
    "Engine": "generation", "GeneratedImage": "generation", "GenerationResult": "generation",
    "StepProgress": "generation",
    "DownloadEvent": "hub", "DownloadPlan": "hub", "ModelHub": "hub", "format_bytes": "hub",
    "EngineSettings": "manager", "ModelManager": "manager", "StudioModel": "manager",
    "FileDigest": "metadata", "GenerationRecord": "metadata", "read_png_record": "metadata",
    "ModelRecord": "registry", "ModelRegistry": "registry", "ModelSource": "registry", "resolve_source": "registry",
    "GenerateRequest": "requests", "InpaintRequest": "requests", "ModelChoice": "requests",
    "field_bounds": "requests", "field_default": "requests",
    "DEFAULT_SCHEDULER": "schedulers", "SCHEDULERS": "schedulers", "scheduler_key": "schedulers",
}

if TYPE_CHECKING:
    from facestudio.engine.devices import DevicePlacement, select_device
    from facestudio.engine.generation import Engine, GeneratedImage, GenerationResult, StepProgress
    from facestudio.engine.hub import DownloadEvent, DownloadPlan, ModelHub, format_bytes
    from facestudio.engine.manager import EngineSettings, ModelManager, StudioModel
    from facestudio.engine.metadata import FileDigest, GenerationRecord, read_png_record
    from facestudio.engine.registry import ModelRecord, ModelRegistry, ModelSource, resolve_source
    from facestudio.engine.requests import (
        GenerateRequest,
        InpaintRequest,
        ModelChoice,
        field_bounds,
        field_default,
    )
    from facestudio.engine.schedulers import DEFAULT_SCHEDULER, SCHEDULERS, scheduler_key


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'facestudio.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"facestudio.engine.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

__all__ = [
    "DEFAULT_SCHEDULER",
    "SCHEDULERS",
    "DevicePlacement",
    "DownloadEvent",
    "DownloadPlan",
    "Engine",
    "EngineSettings",
    "FileDigest",
    "GenerateRequest",
    "GeneratedImage",
    "GenerationRecord",
    "GenerationResult",
    "InpaintRequest",
    "ModelChoice",
    "ModelHub",
    "ModelManager",
    "ModelRecord",
    "ModelRegistry",
    "ModelSource",
    "StepProgress",
    "StudioModel",
    "field_bounds",
    "field_default",
    "format_bytes",
    "read_png_record",
    "resolve_source",
    "scheduler_key",
    "select_device",
]
