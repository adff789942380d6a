"""The engine: model manager, downloads, and identity-preserving pipelines over diffusers.

Layering: uses `facestudio.face` and `facestudio.fact`; the fronts (CLI, UI) use only this package's public API.
"""

from facestudio.engine.devices import DevicePlacement, select_device
from facestudio.engine.generation import Engine, GeneratedImage, GenerationResult, StepProgress
from facestudio.engine.hub import DownloadEvent, DownloadPlan, ModelHub, format_bytes
from facestudio.engine.manager import EngineSettings, ModelManager, StudioModel
from facestudio.engine.metadata import read_png_record
from facestudio.engine.registry import ModelRecord, ModelRegistry, ModelSource, resolve_source
from facestudio.engine.requests import GenerateRequest, InpaintRequest, ModelChoice
from facestudio.engine.schedulers import DEFAULT_SCHEDULER, SCHEDULERS, scheduler_key
from facestudio.engine.settings import studio_home

__all__ = [
    "DEFAULT_SCHEDULER",
    "SCHEDULERS",
    "DevicePlacement",
    "DownloadEvent",
    "DownloadPlan",
    "Engine",
    "EngineSettings",
    "GenerateRequest",
    "GeneratedImage",
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
    "format_bytes",
    "read_png_record",
    "resolve_source",
    "scheduler_key",
    "select_device",
    "studio_home",
]
