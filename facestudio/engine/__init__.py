"""The engine: model manager, downloads, and identity-preserving pipelines over diffusers.

Layering: uses `facestudio.face` and `facestudio.fact`; the fronts (CLI, UI) use only this package's public API.

The names below are imported on first use (PEP 562): `from facestudio.engine.requests import GenerateRequest` or
`facestudio.engine.ModelRegistry` must not pay for torch and diffusers, so the command line and the web page start
in well under a second when they do not generate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from facestudio.lazy import lazy_exports

_EXPORTS = {
    "DevicePlacement": "devices", "select_device": "devices",
    "Engine": "generation", "GeneratedImage": "generation", "GenerationResult": "generation",
    "StepProgress": "generation",
    "DownloadEvent": "hub", "DownloadPlan": "hub", "ModelHub": "hub", "format_bytes": "hub",
    "EngineSettings": "manager", "ModelManager": "manager", "AdaptedBaseModel": "manager",
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
    from facestudio.engine.manager import AdaptedBaseModel, EngineSettings, ModelManager
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "DEFAULT_SCHEDULER",
    "SCHEDULERS",
    "AdaptedBaseModel",
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
    "field_bounds",
    "field_default",
    "format_bytes",
    "read_png_record",
    "resolve_source",
    "scheduler_key",
    "select_device",
]
