"""What every tab of the studio shares: options from the command line, the engine (created on first use), saved
identities, style presets, the job queue and its runner, and the rules for which files a request may touch.

Nothing here imports torch or loads a model at start: `python app.py` answers within seconds, and the first request
that needs the engine creates it (the model manager then loads models lazily, with progress).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
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
from facestudio.ui.common import hide_paths
from facestudio.ui.workspace import ResultBook, Workspace, Workspaces

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
    controlnet: str | None = None  # the OpenPose ControlNet (--pose-controlnet)
    canny_controlnet: str | None = None  # release inpainting's edge ControlNet (--canny-controlnet)
    clip_model: str | None = None  # Compare strengths' CLIP score (--clip-model; None: the registry's, if on disk)
    backend: str = "auto"
    allow_download: bool = True
    presets_dir: Path = field(default_factory=data.presets_dir)
    assets_dir: Path = field(default_factory=data.assets_dir)
    run_jobs: bool = True
    #: The `--auth` user names: each gets a workspace of their own unless `shared_workspace` (see `workspace.py`).
    users: tuple[str, ...] = ()
    shared_workspace: bool = False


class StudioContext:
    """The studio's shared state. One per process; every handler receives it."""

    def __init__(self, options: StudioOptions):
        self.options = options
        self.settings = options.settings
        self.home = Path(options.settings.home)
        self.workspaces = Workspaces(self.home, options.users, options.shared_workspace,
                                     max_pixels=self.settings.max_pixels)
        self.identities: IdentityStore = self.workspaces.shared_identities  # the shared workspace's
        self.results = ResultBook()
        self.jobs = JobStore(self.home)
        self.presets, self.preset_problems = load_preset_library(options.presets_dir, options.assets_dir,
                                                                 user_presets_dir(self.home))
        for problem in self.preset_problems:
            logger.warning("preset skipped: %s", problem)
        self.registry = ModelRegistry.default()
        self.runner = JobRunner(self.jobs, before_start=self.unload_models, settings=self.settings)
        self._engine = None
        self._engine_lock = threading.Lock()
        self._paths: dict[str, str] = {}  # a shown file value -> the file (see `shown`)
        self._paths_lock = threading.Lock()
        hide_paths((str(self.home.resolve()), "FACESTUDIO_HOME"), (str(self.home), "FACESTUDIO_HOME"),
                   (str(upload_cache_dir()), "(uploads)"), (str(Path(data.__file__).resolve().parent), "(studio)"))

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

    # -- who is asking ------------------------------------------------------------------------------------------

    def workspace(self, request=None) -> Workspace:
        """The workspace of a request (`gr.Request`: its login and browser session); `None` (a page being built):
        what everyone may see (`Workspaces.page`)."""
        if request is None:
            return self.workspaces.page()
        return self.workspaces.of(getattr(request, "username", None), getattr(request, "session_hash", None))

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
        """Folders the server may serve as they are: none. Everything the page shows is handed out in a response
        (`handout`, or gradio's own cache for images and thumbnails), never by a path a visitor could guess; nothing
        under `FACESTUDIO_HOME` (outputs, jobs, identities) is served directly."""
        return []

    def handout(self, path: str | Path) -> str:
        """A copy of one of the studio's files (a result, a training sample) for a response, in gradio's upload
        cache under a random folder name: served to whoever got the response, unguessable for anyone else, and
        removed with gradio's cache."""
        source = Path(path)
        folder = upload_cache_dir() / f"fs-{secrets.token_urlsafe(18)}"
        folder.mkdir(parents=True, exist_ok=False)
        target = folder / source.name
        shutil.copyfile(source, target)
        return str(target)

    def shown_path(self, path: str | Path | None) -> str:
        """How a response names a file of this machine: relative to FACESTUDIO_HOME when inside it, else only its
        name (no absolute path of the machine reaches a page or an API answer)."""
        if path is None or path == "":
            return ""
        return public_value(str(path), self.home)

    def uploaded_file(self, value, what: str) -> Path | None:
        """A file the browser uploaded (gradio's upload cache; a path or gradio's file dict); anything else is
        refused, so no client can make the studio read an arbitrary path or another visitor's files."""
        if isinstance(value, dict):  # a raw file payload (events with preprocess=False)
            value = value.get("path")
        if value is None or value == "":
            return None
        if not isinstance(value, str | os.PathLike) or "\x00" in str(value):
            raise InvalidRequestError(f"The {what} must be an uploaded file.")
        name = clip(Path(value).name)
        path = Path(value).resolve()
        root = upload_cache_dir()
        if root not in path.parents:
            raise InvalidRequestError(f"The {what} must be uploaded; {name} is not an upload.")
        if not path.is_file():
            raise InvalidRequestError(f"The {what} {name} is missing; upload it again.")
        return path

    def uploaded_image(self, value, what: str) -> Path | None:
        """`uploaded_file`, opened once by the studio's loader (`load_image`: size and bomb limits, broken or empty
        files refused in one sentence naming it) before any model is touched."""
        from facestudio.face.image import load_image

        path = self.uploaded_file(value, what)
        if path is not None:
            load_image(path, name=path.name, max_pixels=self.settings.max_pixels)
        return path

    # -- choices for the dropdowns (values are checked again on the server) --------------------------------------

    def base_model_choices(self) -> list[tuple[str, str]]:
        registry = self.registry
        choices = []
        if self.options.base_model:
            choices.append((f"{self.shown_path(self.options.base_model)} (started with)", self.options.base_model))
        for record in registry.of_kind("base_model"):
            default = " (default)" if record.key == registry.default_for("base_model") else ""
            choices.append((f"{record.key}: {record.title}{default}", record.key))
        choices += self.local_choices("base_model")
        return self.shown(choices)

    def adapter_choices(self, ws: Workspace | None = None) -> list[tuple[str, str]]:
        """The registry's adapters, the one the studio started with, and the adapter of every finished training
        job the workspace `ws` sees (`None`: what everyone may see)."""
        choices = [("matching the base model", AUTO_ADAPTER)]
        if self.options.adapter:
            choices.append((f"{self.shown_path(self.options.adapter)} (started with)", self.options.adapter))
        for record in self.registry.of_kind("fact_adapter"):
            choices.append((f"{record.key}: {record.title}", record.key))
        choices += self.local_choices("fact_adapter")
        for job in (ws or self.workspaces.page()).jobs(self.jobs):
            try:
                done = job.status().state == RunState.DONE and job.folder.adapter_path.is_file()
            except Exception as err:  # a damaged job folder is skipped, the others are offered
                logger.warning("job %s skipped in the adapter list: %s", job.id, err)
                continue
            if done:
                choices.append((f"trained: {job.name} ({job.id})", str(job.folder.adapter_path)))
        return self.shown(choices)

    def controlnet_choices(self, role: str) -> list[tuple[str, str]]:
        """The ControlNets offered for `role` (`controlnet`: OpenPose, `canny_controlnet`: Canny edges): the default
        (the empty value: the one the studio started with, else the registry's), every registry ControlNet and the
        local ones."""
        started = self.options.controlnet if role == "controlnet" else self.options.canny_controlnet
        default = self.shown_path(started) if started else self.registry.default_for(role)
        choices = [(f"default ({default})", "")]
        for record in self.registry.of_kind("controlnet"):
            choices.append((f"{record.key}: {record.title}", record.key))
        choices += self.local_choices("controlnet")
        return self.shown(choices)

    def local_choices(self, kind: str) -> list[tuple[str, str]]:
        """The models of `kind` a user dropped into FACESTUDIO_HOME/models/local/ (read again on every call, so a
        new file appears without a restart)."""
        from facestudio.engine.inventory import local_models

        return [(f"local: {model.name}", str(model.path)) for model in local_models(self.home) if model.kind == kind]

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
        return self.shown(choices)

    def shown(self, choices: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Choices as the page gets them: a file's value is its path relative to FACESTUDIO_HOME (or its name), and
        `checked_choice` maps it back to the file."""
        shown = []
        for label, value in choices:
            public = public_value(value, self.home)
            if public != value:
                with self._paths_lock:
                    self._paths[public] = value
            shown.append((label, public))
        return shown

    def checked_choice(self, value: str | None, choices: Callable[[], list[tuple[str, str]]], what: str) -> str | None:
        """What `value` stands for if it is one of `choices()` (else a clear error): the file behind a shown path.
        The empty value means the default (None) and does not list the choices (listing adapters reads every job's
        status). The machine's own path of an offered file is accepted too (scripts written before paths were
        hidden), never any other path."""
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise InvalidRequestError(f"The {what} must be one of the offered choices; reload the page.")
        offered = {v for _, v in choices()}
        if value in offered:
            with self._paths_lock:
                return self._paths.get(value, value)
        if public_value(value, self.home) in offered:
            return value
        raise InvalidRequestError(f"{clip(value)!r} is not one of the offered {what} choices; reload the page.")

    def default_models(self):
        """The models the studio was started with (`None`: the registry's defaults)."""
        from facestudio.engine.requests import ModelChoice

        return ModelChoice(base_model=self.options.base_model, adapter=self.options.adapter,
                           face_encoder=self.options.face_encoder, controlnet=self.options.controlnet,
                           canny_controlnet=self.options.canny_controlnet)

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


#: Values echoed in messages are clipped to this many characters (a 10,000-character name is not sent back).
ECHO_LIMIT = 80


def clip(text: object, limit: int = ECHO_LIMIT) -> str:
    """`text` as a message may echo it: at most `limit` characters, control characters replaced."""
    value = "".join(ch if ch.isprintable() else "?" for ch in str(text)[: limit + 1])
    return value if len(value) <= limit else value[: limit - 1] + "…"


def public_value(value: str, home: Path) -> str:
    """A choice value as the page may see it: an absolute path becomes relative to `home` (inside it) or
    `…/<name>` (outside it); anything else (registry keys, hub ids) stays."""
    if not value or not os.path.isabs(value):
        return value
    path = Path(value)
    try:
        return path.resolve().relative_to(home.resolve()).as_posix()
    except (ValueError, OSError):
        return f"…/{path.name}"
