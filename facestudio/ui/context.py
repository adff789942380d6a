"""What every tab of the studio shares: options from the command line, the engine (created on first use), saved
identities, style presets, the job queue and its runner, and the rules for which files a request may touch.

Nothing here imports torch or loads a model at start: `python app.py` answers within seconds, and the first request
that needs the engine creates it (the model manager then loads models lazily, with progress).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from facestudio import data
from facestudio.config import StudioSettings
from facestudio.engine.identities import IdentityStore
from facestudio.engine.presets import StylePreset, load_preset_library, user_presets_dir
from facestudio.engine.registry import ModelRegistry
from facestudio.errors import InvalidRequestError
from facestudio.jobs import JobRunner, JobStore, RunState

logger = logging.getLogger("facestudio.app")

AUTO_ADAPTER = ""  # the dropdown value meaning "the adapter that matches the base model"
NO_LORA = ""


@dataclass(frozen=True)
class StudioOptions:
    """How the studio was started (`python app.py --help` documents each); `settings` is what the environment says
    (home, offline, limits), read once by `app.py`."""

    settings: StudioSettings
    device: str = "auto"
    dtype: str = "auto"
    low_vram: bool = False
    attention: str = "auto"
    base_model: str | None = None
    adapter: str | None = None
    face_encoder: str | None = None
    backend: str = "auto"
    allow_download: bool = True
    presets_dir: Path = field(default_factory=data.presets_dir)
    assets_dir: Path = field(default_factory=data.assets_dir)
    run_jobs: bool = True


class StudioContext:
    """The studio's shared state. One per process; every handler receives it."""

    def __init__(self, options: StudioOptions):
        self.options = options
        self.settings = options.settings
        self.home = Path(options.settings.home)
        self.identities = IdentityStore(self.home, max_pixels=self.settings.max_pixels)
        self.jobs = JobStore(self.home)
        self.presets, self.preset_problems = load_preset_library(options.presets_dir, options.assets_dir,
                                                                 user_presets_dir(self.home))
        for problem in self.preset_problems:
            logger.warning("preset skipped: %s", problem)
        self.registry = ModelRegistry.default()
        self.runner = JobRunner(self.jobs, before_start=self.unload_models, settings=self.settings)
        self._engine = None
        self._engine_lock = threading.Lock()

    # -- the engine, created on first use ------------------------------------------------------------------------

    @property
    def engine_started(self) -> bool:
        return self._engine is not None

    @property
    def engine(self):
        """The `Engine` (imports torch and diffusers the first time; models still load only when used)."""
        with self._engine_lock:
            if self._engine is None:
                from facestudio.engine import Engine, EngineSettings, ModelManager, select_device
                from facestudio.engine.logs import quiet_model_libraries

                quiet_model_libraries()
                options = self.options
                settings = EngineSettings.from_settings(
                    self.settings, placement=select_device(options.device, options.dtype, options.low_vram),
                    attention=options.attention, allow_download=options.allow_download, face_backend=options.backend)
                self._engine = Engine(ModelManager(settings))
                logger.info("engine ready on %s (%s)", settings.placement.device, settings.placement.dtype_name)
            return self._engine

    @property
    def manager(self):
        return self.engine.manager

    def unload_models(self) -> None:
        """Free every loaded model (before a training job starts, and from the Models tab)."""
        if self._engine is not None:
            freed = self._engine.manager.unload()
            if freed:
                logger.info("unloaded %s", ", ".join(freed))

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Work the job queue in the background (unless another studio or `jobs run` already does)."""
        if not self.options.run_jobs:
            return
        try:
            self.runner.start()
        except Exception as err:  # another process runs this home's queue: the studio still shows the jobs
            logger.warning("not running training jobs here: %s", err)

    def stop(self) -> None:
        if self.runner.running:
            self.runner.stop(cancel_running=True)

    # -- files: outputs, scratch, and which paths a request may use ----------------------------------------------

    def outputs_dir(self) -> Path:
        folder = self.home / "outputs" / time.strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def scratch_dir(self) -> Path:
        folder = self.home / "uploads" / "scratch"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def served_dirs(self) -> list[str]:
        """Folders whose files the page may show and download: generated images, training samples and the presets'
        thumbnails (built-in and the user's)."""
        return [str(self.home / "outputs"), str(self.home / "jobs"), str(self.home / "uploads" / "scratch"),
                str(self.options.assets_dir), str(user_presets_dir(self.home))]

    def uploaded_file(self, value: str | None, what: str) -> Path | None:
        """A file the browser uploaded (gradio's cache) or one of the studio's own files; anything else is refused,
        so no client can make the studio read an arbitrary path."""
        if value is None or value == "":
            return None
        path = Path(value).resolve()
        roots = [upload_cache_dir(), self.home.resolve()]
        if not any(path == root or root in path.parents for root in roots):
            raise InvalidRequestError(f"The {what} must be uploaded; {Path(value).name} is not an upload.")
        if not path.is_file():
            raise InvalidRequestError(f"The {what} {Path(value).name} is missing; upload it again.")
        return path

    # -- choices for the dropdowns (values are checked again on the server) --------------------------------------

    def base_model_choices(self) -> list[tuple[str, str]]:
        registry = self.registry
        choices = []
        if self.options.base_model:
            choices.append((f"{self.options.base_model} (started with)", self.options.base_model))
        for record in registry.of_kind("base_model"):
            default = " (default)" if record.key == registry.default_for("base_model") else ""
            choices.append((f"{record.key}: {record.title}{default}", record.key))
        return choices

    def adapter_choices(self) -> list[tuple[str, str]]:
        """The registry's adapters, the one the studio started with, and every finished training job's adapter."""
        choices = [("matching the base model", AUTO_ADAPTER)]
        if self.options.adapter:
            choices.append((f"{self.options.adapter} (started with)", self.options.adapter))
        for record in self.registry.of_kind("fact_adapter"):
            choices.append((f"{record.key}: {record.title}", record.key))
        for job in self.jobs.list():
            if job.status().state == RunState.DONE and job.folder.adapter_path.is_file():
                choices.append((f"trained: {job.name} ({job.id})", str(job.folder.adapter_path)))
        return choices

    def lora_choices(self) -> list[tuple[str, str]]:
        """No LoRA, each preset's LoRA, and `.safetensors` files in `FACESTUDIO_HOME/loras`."""
        choices = [("none", NO_LORA)]
        for preset in self.presets:
            if preset.lora is not None:
                label = preset.lora.name if isinstance(preset.lora, Path) else preset.lora  # a file or a hub reference
                choices.append((f"{label} (preset {preset.name})", str(preset.lora)))
        folder = self.home / "loras"
        if folder.is_dir():
            for path in sorted(folder.glob("*.safetensors")):
                choices.append((path.name, str(path)))
        return choices

    def checked_choice(self, value: str | None, choices: Callable[[], list[tuple[str, str]]], what: str) -> str | None:
        """`value` if it is one of `choices()` (else a clear error); the empty value means the default (None) and
        does not list the choices (listing adapters reads every job's status)."""
        if value is None or value == "":
            return None
        if value not in {v for _, v in choices()}:
            raise InvalidRequestError(f"{value!r} is not one of the offered {what} choices; reload the page.")
        return value

    def default_models(self):
        """The models the studio was started with (`None`: the registry's defaults)."""
        from facestudio.engine.requests import ModelChoice

        return ModelChoice(base_model=self.options.base_model, adapter=self.options.adapter,
                           face_encoder=self.options.face_encoder)

    def preset(self, key: str | None) -> StylePreset | None:
        if not key:
            return None
        for preset in self.presets:
            if preset.key == key or preset.name == key:
                return preset
        raise InvalidRequestError(f"There is no style preset {key!r}; choose one from the gallery.")


def upload_cache_dir() -> Path:
    """Where gradio keeps the files browsers and API clients upload."""
    configured = os.environ.get("GRADIO_TEMP_DIR")
    return Path(configured).resolve() if configured else (Path(tempfile.gettempdir()) / "gradio").resolve()
