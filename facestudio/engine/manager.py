"""`ModelManager`: every model the studio uses, loaded lazily on first use, kept, and unloaded on request.

Identifying (`registry.py`), fetching (`hub.py`) and loading (here) are separate. Nothing is loaded or
downloaded when the manager is created; each getter loads what it needs once, under one load lock (two requests
at once never load a model twice), and later calls get the same objects. Generation holds `gpu_lock`, so a
model is never unloaded or re-configured (LoRA, strength) while it runs.

One base model (with its FACT adapter installed) is kept at a time: switching base models frees the previous
one first, which is what keeps the studio inside a consumer GPU's memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import torch

from facestudio.config import DEFAULT_INSIGHTFACE_ROOT, DEFAULT_MAX_PIXELS, StudioSettings
from facestudio.engine.devices import DevicePlacement, free_accelerator_memory, out_of_memory_guard, select_device
from facestudio.engine.hashing import HashCache
from facestudio.engine.hub import DownloadCallback, DownloadPlan, ModelHub
from facestudio.engine.registry import ModelRegistry, ModelSource, is_remote_lora, resolve_source
from facestudio.errors import BackendUnavailableError, CheckpointError

if TYPE_CHECKING:
    # From the defining modules: for a type checker, `diffusers`' lazy top-level names are its dummy classes.
    from diffusers.models import ControlNetModel, UNet2DConditionModel
    from diffusers.pipelines.controlnet.pipeline_controlnet import StableDiffusionControlNetPipeline
    from diffusers.pipelines.controlnet.pipeline_controlnet_inpaint import StableDiffusionControlNetInpaintPipeline
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import StableDiffusionInpaintPipeline

    from facestudio.engine.clip_score import ClipScorer
    from facestudio.face import FaceAnalyzer
    from facestudio.face.openpose_face import FaceKeypointModel, HandModel
    from facestudio.face.pose import PoseEstimator
    from facestudio.fact import FACTAdapter, TransFace

logger = logging.getLogger(__name__)

#: The diffusers pipelines `ModelManager.pipeline` builds, one class per `PIPELINE_KINDS` entry.
SDPipeline: TypeAlias = (
    "StableDiffusionPipeline | StableDiffusionControlNetPipeline | StableDiffusionInpaintPipeline"
    " | StableDiffusionControlNetInpaintPipeline"
)
_Model = TypeVar("_Model")

ATTENTION_BACKENDS = ("auto", "sdpa", "xformers", "sliced")
PIPELINE_KINDS = ("txt2img", "txt2img+pose", "inpaint", "inpaint+pose", "inpaint+pose+canny")


@dataclass(frozen=True)
class EngineSettings:
    """Everything the engine needs to know about this machine, given once by the front.

    Args:
        home (`Path`): the studio's folder (`StudioSettings.home`); the model cache lives in `home/models`.
        placement (`DevicePlacement`): device, dtype and `low_vram` (model CPU offload + VAE tiling).
        attention (`str`, *optional*, defaults to `"auto"`): `sdpa` (PyTorch's fused attention, the default),
            `xformers` (needs the package) or `sliced` (least memory, slowest).
        allow_download (`bool`, *optional*, defaults to `True`): fetch missing models; `False` only reads the cache.
        offline (`bool`, *optional*, defaults to `False`): the hub reads its cache only (`StudioSettings.offline`).
        face_backend, embedder, min_face_px (*optional*): face detector, identity embedder and the smallest face
            the detector looks for (see `facestudio.face`).
        single_file_config (`str`, *optional*): where the configs and tokenizer for single-file checkpoints come
            from (a registry key, hub id or local diffusers folder); defaults to the registry's default.
        max_pixels (`int`, *optional*, defaults to 64000000): the largest image a request may give
            (`StudioSettings.max_pixels`).
        insightface_root (`Path`, *optional*, defaults to `~/.insightface`): where the face analyzer looks for
            insightface packs (`StudioSettings.insightface_root`).

    Fronts build it with `EngineSettings.from_settings(settings, placement=..., ...)`.
    """

    home: Path
    placement: DevicePlacement = field(default_factory=lambda: select_device("cpu"))
    attention: str = "auto"
    allow_download: bool = True
    offline: bool = False
    face_backend: str = "auto"
    embedder: str = "auto"
    min_face_px: int = 30
    single_file_config: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    insightface_root: Path = DEFAULT_INSIGHTFACE_ROOT

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(f"`attention` must be one of {ATTENTION_BACKENDS}; got {self.attention!r}.")

    @classmethod
    def from_settings(cls, settings: StudioSettings, **machine: Any) -> EngineSettings:
        """The engine's part of the studio's settings (home, offline, image limit, insightface root), with the
        machine options a front adds (`placement`, `attention`, `allow_download`, `face_backend`, ...)."""
        return cls(home=settings.home, offline=settings.offline, max_pixels=settings.max_pixels,
                   insightface_root=settings.insightface_root, **machine)


@dataclass(frozen=True)
class LoadedFile:
    """A model as it was loaded: what the user named, the resolved local path, and its SHA-256."""

    spec: str
    path: Path
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"spec": self.spec, "path": str(self.path), "sha256": self.sha256}


@dataclass
class AdaptedBaseModel:
    """A base SD1.5 model with its FACT adapter installed, and the diffusers pipelines built over it.

    The pipelines share one set of components; `pipeline(kind)` builds each the first time it is asked for.
    """

    base: LoadedFile
    adapter_file: LoadedFile
    components: dict[str, Any]
    adapter: FACTAdapter
    scheduler_config: dict[str, Any]
    placement: DevicePlacement
    pipelines: dict[str, SDPipeline] = field(default_factory=dict)
    lora: LoadedFile | None = None
    offloaded_pipeline: SDPipeline | None = None

    @property
    def unet(self) -> UNet2DConditionModel:
        return self.components["unet"]


class ModelManager:
    """Knows every model (base, FACT adapter, face encoder, ControlNet, face analyzer); loads each on first use.

    Example:
        ```py
        >>> manager = ModelManager(EngineSettings(home=Path("~/.cache/facestudio").expanduser(),
        ...                                       placement=select_device()))
        >>> model = manager.adapted_base("majicmix")  # downloads on first use, then loads base + adapter
        >>> manager.unload()  # frees the GPU
        ```
    """

    def __init__(self, settings: EngineSettings, registry: ModelRegistry | None = None, hub: ModelHub | None = None):
        self.settings = settings
        self.registry = registry or ModelRegistry.default()
        self.hub = hub or ModelHub(settings.home, offline=settings.offline)
        self.hashes = HashCache(settings.home / "hashes.json")
        # Loads (which can take minutes) are serialised; `gpu_lock` serialises work on the loaded models. Lock
        # order, everywhere: `gpu_lock` first, then `_load_lock` (the engine holds `gpu_lock` while it asks for
        # models, so the reverse order could deadlock).
        self._load_lock = threading.RLock()
        self.gpu_lock = threading.RLock()
        self._base: AdaptedBaseModel | None = None
        self._base_key: tuple[str, str] | None = None
        self._face_encoders: dict[str, tuple[TransFace, LoadedFile]] = {}
        self._controlnets: dict[str, tuple[ControlNetModel, LoadedFile]] = {}
        self._clip_scorers: dict[str, tuple[ClipScorer, LoadedFile]] = {}
        self._analyzer: FaceAnalyzer | None = None
        self._pose_estimator: PoseEstimator | None = None
        self._face_keypoints: FaceKeypointModel | None = None
        self._hands: HandModel | None = None
        self.load_count: dict[str, int] = {}

    @property
    def placement(self) -> DevicePlacement:
        return self.settings.placement

    # ----------------------------------------------------------------------------------------- identification

    def source(self, kind: str, spec: str | Path | None) -> ModelSource:
        """What the user named for `kind`, or the default (the default base model, the matching adapter...)."""
        if spec is None or str(spec).strip() == "":
            configured = self.settings.single_file_config if kind == "pipeline_config" else None
            spec = configured or self.registry.default_for(kind)
        return resolve_source(spec, kind, self.registry)

    def adapter_source(self, base: ModelSource, spec: str | Path | None) -> ModelSource:
        if spec is not None and str(spec).strip():
            return resolve_source(spec, "fact_adapter", self.registry)
        record = self.registry.adapter_for(base)
        if base.record is None or base.record.adapter is None:
            logger.info("No adapter named for the custom base model %s; using %s.", base.label, record.key)
        return ModelSource(record.key, "fact_adapter", record=record)

    def needed_downloads(self, sources: list[ModelSource]) -> list[DownloadPlan]:
        """The downloads `sources` still need (sizes from the hub when reachable); empty when all are on disk.

        Fronts call this before a generation to tell the user what will be fetched and how big it is.
        """
        plans = []
        for source in self._with_dependencies(sources):
            if source.record is None or self.hub.cached_path(source.record) is not None:
                continue
            plans.append(self.hub.plan(source.record))
        return plans

    def _with_dependencies(self, sources: list[ModelSource]) -> list[ModelSource]:
        result = list(sources)
        if any(s.kind == "base_model" and s.is_single_file for s in sources):
            result.append(self.source("pipeline_config", None))
        return result

    def locate(self, source: ModelSource, progress: DownloadCallback | None = None) -> Path:
        """The local file or folder of `source`, downloading it if allowed."""
        if source.path is not None:
            return source.path
        record = source.hub_record
        cached = self.hub.cached_path(record)
        if cached is not None:
            return cached
        if not self.settings.allow_download:
            raise self.hub.not_available(record, "downloads were not allowed for this request")
        return self.hub.fetch(record, progress)

    def _loaded_file(self, source: ModelSource, path: Path) -> LoadedFile:
        return LoadedFile(source.spec, path, self.hashes.of(path))

    def _count(self, what: str) -> None:
        self.load_count[what] = self.load_count.get(what, 0) + 1

    # ----------------------------------------------------------------------------------------- base + adapter

    def adapted_base(self, base: str | Path | None = None, adapter: str | Path | None = None,
                     progress: DownloadCallback | None = None) -> AdaptedBaseModel:
        """The base model with its FACT adapter installed (loaded once; a different pair replaces it)."""
        base_source = self.source("base_model", base)
        adapter_source = self.adapter_source(base_source, adapter)
        key = (base_source.label, adapter_source.label)
        with self.gpu_lock, self._load_lock:  # never swap models under a running generation
            if self._base is not None and self._base_key == key:
                return self._base
            base_path, config_path = self.locate_base(base_source, progress)
            adapter_path = self.locate(adapter_source, progress)
            self._drop_base()
            with out_of_memory_guard(self.placement, f"loading the base model {base_source.label}"):
                self._base = self._load_base(base_source, base_path, adapter_source, adapter_path, config_path)
            self._base_key = key
            return self._base

    def locate_base(self, source: ModelSource, progress: DownloadCallback | None = None) -> tuple[Path, Path | None]:
        """(model path, config folder): a single-file base model also needs the SD1.5 configs and tokenizer."""
        path = self.locate(source, progress)
        config_path = self.locate(self.source("pipeline_config", None), progress) if path.is_file() else None
        return path, config_path

    def _load_base(self, base_source: ModelSource, base_path: Path, adapter_source: ModelSource,
                   adapter_path: Path, config_path: Path | None) -> AdaptedBaseModel:
        from facestudio.fact import FACTAdapter

        self._count("base_model")
        placement = self.placement
        logger.info("Loading base model %s (%s, %s)", base_source.label, placement.device, placement.dtype_name)
        pipe = load_base_pipeline(base_path, placement.dtype, config_path)
        components = {name: pipe.components[name] for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
        for name in ("vae", "text_encoder", "unet"):
            components[name].requires_grad_(False).eval()  # inference only: no autograd state, dropout off
        _set_attention_backend(pipe, self.settings.attention)  # before FACT: the face layers wrap these processors
        if placement.low_vram:
            components["vae"].enable_tiling()
        else:
            pipe.to(placement.device)
        self._count("fact_adapter")
        try:
            adapter = FACTAdapter.from_checkpoint(adapter_path, components["unet"], pass_through_other_layers=True,
                                                  dtype=placement.dtype)
        except CheckpointError as err:
            raise CheckpointError(f"The FACT adapter {adapter_source.label} does not fit the base model "
                                  f"{base_source.label}: {err}") from err
        adapter.local_fac_prj.to(placement.device)  # the resampler runs once per request; small enough to stay
        adapter.requires_grad_(False).eval()
        return AdaptedBaseModel(
            base=self._loaded_file(base_source, base_path),
            adapter_file=self._loaded_file(adapter_source, adapter_path),
            components=components,
            adapter=adapter,
            scheduler_config=dict(components["scheduler"].config),
            placement=placement,
        )

    def _drop_base(self) -> None:
        if self._base is None:
            return
        model = self._base
        self._base = None
        self._base_key = None
        for pipe in model.pipelines.values():
            if hasattr(pipe, "remove_all_hooks"):
                pipe.remove_all_hooks()
        model.pipelines.clear()
        model.components.clear()
        del model
        free_accelerator_memory()

    def pipeline(self, model: AdaptedBaseModel, kind: str,
                 controlnet: ControlNetModel | list[ControlNetModel] | None = None) -> SDPipeline:
        """The diffusers pipeline of `kind` over `studio`'s shared components (built once, then reused).

        `inpaint+pose+canny` takes a list of ControlNets, which diffusers runs as a `MultiControlNetModel`."""
        import diffusers

        if kind not in PIPELINE_KINDS:
            raise ValueError(f"`kind` must be one of {PIPELINE_KINDS}; got {kind!r}.")
        with self._load_lock:
            nets = [] if controlnet is None else controlnet if isinstance(controlnet, list) else [controlnet]
            key = kind if not nets else f"{kind}:" + ",".join(str(id(net)) for net in nets)
            pipe = model.pipelines.get(key)
            if pipe is None:
                classes = {"txt2img": "StableDiffusionPipeline",
                           "txt2img+pose": "StableDiffusionControlNetPipeline",
                           "inpaint": "StableDiffusionInpaintPipeline",
                           "inpaint+pose": "StableDiffusionControlNetInpaintPipeline",
                           "inpaint+pose+canny": "StableDiffusionControlNetInpaintPipeline"}
                extra = {"controlnet": controlnet} if "+pose" in kind else {}
                pipe = getattr(diffusers, classes[kind])(
                    **model.components, safety_checker=None, feature_extractor=None,
                    requires_safety_checker=False, **extra,
                )
                pipe.set_progress_bar_config(disable=True)
                model.pipelines[key] = pipe
            for net in nets:
                self._bind_controlnet(net, model)
            if model.placement.low_vram and model.offloaded_pipeline is not pipe:
                # Hooks live on the shared modules; re-arm them for the pipeline about to run.
                pipe.enable_model_cpu_offload(device=model.placement.device)
                model.offloaded_pipeline = pipe
            return pipe

    @staticmethod
    def _bind_controlnet(controlnet: ControlNetModel, model: AdaptedBaseModel) -> None:
        """ControlNets must see the text tokens only (FACT.md §4): strip the face tokens in their attention."""
        from facestudio.fact import install_text_only_attention

        if getattr(controlnet, "_facestudio_conditioning", None) is not model.adapter.conditioning:
            install_text_only_attention(controlnet, model.adapter.conditioning)
            # torch types `Module.__setattr__` for tensors and modules only; any value is stored.
            controlnet._facestudio_conditioning = model.adapter.conditioning  # type: ignore[assignment]

    # ----------------------------------------------------------------------------------------- LoRA

    def apply_lora(self, model: AdaptedBaseModel, lora: str | Path | None, scale: float) -> LoadedFile | None:
        """Load a style LoRA (`.safetensors`) into the base model at `scale`, or remove any when `lora` is None.

        The LoRA stays loaded for the next request with the same file; another file replaces it.
        """
        with self.gpu_lock, self._load_lock:
            pipe = self.pipeline(model, "txt2img")
            if lora is None:
                if model.lora is not None:
                    pipe.unload_lora_weights()
                    model.lora = None
                return None
            if is_remote_lora(str(lora), self.registry):  # `modelscope:owner/name/file@rev` or a registry key
                source = resolve_source(str(lora), "lora", self.registry)
                if not str(source.hub_record.file or "").lower().endswith(".safetensors"):
                    raise CheckpointError(f"LoRA {lora!r} must name a .safetensors file in its repository.")
                lora = self.locate(source)
            path = Path(lora).expanduser()
            if not path.is_file():
                raise CheckpointError(f"LoRA file {str(path)!r} does not exist or is not a file.")
            if path.suffix.lower() != ".safetensors":
                raise CheckpointError(f"LoRA file {path.name!r} must be a .safetensors file (pickles are not loaded).")
            loaded = self._loaded_file(ModelSource(str(lora), "lora", path=path.resolve()), path.resolve())
            name = f"style_{loaded.sha256[:12]}"
            if model.lora is None or model.lora.sha256 != loaded.sha256:
                if model.lora is not None:
                    pipe.unload_lora_weights()
                    model.lora = None
                self._count("lora")
                try:
                    pipe.load_lora_weights(str(path), adapter_name=name)
                except (ValueError, KeyError, RuntimeError, OSError) as err:
                    pipe.unload_lora_weights()
                    raise CheckpointError(f"{path.name} is not a LoRA for a Stable Diffusion 1.5 model: {err}") from err
                model.lora = loaded
            pipe.set_adapters([name], adapter_weights=[float(scale)])
            return loaded

    # ----------------------------------------------------------------------------------------- other models

    def face_encoder(self, spec: str | Path | None = None,
                     progress: DownloadCallback | None = None) -> tuple[TransFace, LoadedFile]:
        """(TransFace, LoadedFile): the frozen face encoder, in float32 (FACT computes its attention in float32)."""
        from facestudio.fact import TransFace

        def load(path: Path) -> TransFace:
            model = TransFace.from_checkpoint(path).float().eval().requires_grad_(False)
            return model.to(self.placement.device)

        return self._cached_load(self._face_encoders, self.source("face_encoder", spec), load, progress)

    def controlnet(self, spec: str | Path | None = None,
                   progress: DownloadCallback | None = None) -> tuple[ControlNetModel, LoadedFile]:
        """(ControlNetModel, LoadedFile): the pose ControlNet (a diffusers folder, single file or hub id)."""
        from diffusers.models import ControlNetModel

        source = self.source("controlnet", spec)

        def load(path: Path) -> ControlNetModel:
            loader = ControlNetModel.from_single_file if path.is_file() else ControlNetModel.from_pretrained
            try:
                model = loader(str(path), dtype=self.placement.dtype, local_files_only=True)
            except (OSError, ValueError) as err:
                raise CheckpointError(f"Cannot load the ControlNet {source.label}: {err}") from err
            model.requires_grad_(False).eval()
            return model if self.placement.low_vram else model.to(self.placement.device)

        return self._cached_load(self._controlnets, source, load, progress)

    def clip_scorer(self, spec: str | Path | None = None,
                    progress: DownloadCallback | None = None) -> tuple[ClipScorer, LoadedFile]:
        """(ClipScorer, LoadedFile): the CLIP model of the prompt-following score (default `clip-vit-l14`), loaded
        (and downloaded) only when a score is asked for, in float32 on the studio's device."""
        from facestudio.engine.clip_score import ClipScorer

        def load(path: Path) -> ClipScorer:
            return ClipScorer.from_pretrained(path, self.placement.device)

        return self._cached_load(self._clip_scorers, self.source("clip", spec), load, progress)

    def _cached_load(self, cache: dict[str, tuple[_Model, LoadedFile]], source: ModelSource,
                     load: Callable[[Path], _Model], progress: DownloadCallback | None) -> tuple[_Model, LoadedFile]:
        """The one path for side models: cache hit, else locate (download), load once, remember."""
        with self._load_lock:
            if source.label in cache:
                return cache[source.label]
            path = self.locate(source, progress)
            self._count(source.kind)
            entry = (load(path), self._loaded_file(source, path))
            cache[source.label] = entry
            return entry

    def analyzer(self) -> FaceAnalyzer:
        """The face analyzer (detector, parser, identity embedder), created on first use."""
        from facestudio.face import FaceAnalyzer

        with self._load_lock:
            if self._analyzer is None:
                self._count("face_analyzer")
                self._analyzer = FaceAnalyzer(backend=self.settings.face_backend, embedder=self.settings.embedder,
                                              min_face_px=self.settings.min_face_px,
                                              insightface_root=self.settings.insightface_root)
            return self._analyzer

    def pose_estimator(self) -> PoseEstimator:
        from facestudio.face.pose import PoseEstimator

        with self._load_lock:
            if self._pose_estimator is None:
                self._pose_estimator = PoseEstimator()
            return self._pose_estimator

    def face_keypoint_model(self) -> FaceKeypointModel:
        """dlib's 68-point predictor for OpenPose face keypoints (the release recipe), created on first use."""
        from facestudio.face.openpose_face import FaceKeypointModel

        with self._load_lock:
            if self._face_keypoints is None:
                self._face_keypoints = FaceKeypointModel()
            return self._face_keypoints

    def hand_model(self) -> HandModel:
        """MediaPipe's bundled hand landmarker (the release recipe's OpenPose hands), created on first use."""
        from facestudio.face.openpose_face import HandModel

        with self._load_lock:
            if self._hands is None:
                self._hands = HandModel()
            return self._hands

    # ----------------------------------------------------------------------------------------- unloading

    def loaded(self) -> list[str]:
        """What is in memory now, for the UI and `models` command."""
        names = []
        if self._base is not None:
            names += [f"base_model:{self._base.base.spec}", f"fact_adapter:{self._base.adapter_file.spec}"]
            if self._base.lora is not None:
                names.append(f"lora:{self._base.lora.spec}")
        names += [f"face_encoder:{key}" for key in self._face_encoders]
        names += [f"controlnet:{key}" for key in self._controlnets]
        names += [f"clip:{key}" for key in self._clip_scorers]
        if self._analyzer is not None:
            names.append("face_analyzer")
        return names

    def unload(self, what: str = "all") -> list[str]:
        """Free models: `all`, `base_model`, `face_encoder`, `controlnet`, `clip` or `face_analyzer`. Waits for a running
        generation to finish first. Returns what was unloaded."""
        choices = ("all", "base_model", "face_encoder", "controlnet", "clip", "face_analyzer")
        if what not in choices:
            raise ValueError(f"`what` must be one of {choices}; got {what!r}.")
        with self.gpu_lock, self._load_lock:
            before = set(self.loaded())
            if what in ("all", "base_model"):
                self._drop_base()
            if what in ("all", "face_encoder"):
                self._face_encoders.clear()
            if what in ("all", "controlnet"):
                self._controlnets.clear()
            if what in ("all", "clip"):
                self._clip_scorers.clear()
            if what in ("all", "face_analyzer") and self._analyzer is not None:
                self._analyzer.close()
                self._analyzer = None
                if self._pose_estimator is not None:
                    self._pose_estimator.close()
                    self._pose_estimator = None
                if self._hands is not None:
                    self._hands.close()
                    self._hands = None
                self._face_keypoints = None
            free_accelerator_memory()
            return sorted(before - set(self.loaded()))


def load_base_pipeline(path: Path, dtype: torch.dtype, config_path: Path | None,
                       without: tuple[str, ...] = ()) -> StableDiffusionPipeline:
    """A `StableDiffusionPipeline` from a diffusers folder or a single-file checkpoint, without the safety checker.

    `without` names components (`unet`, `vae`, `text_encoder`) left unloaded (None): training keeps only the UNet
    resident and loads the VAE and text encoder alone when it needs them.
    """
    from diffusers import StableDiffusionPipeline

    skipped: dict[str, None] = {name: None for name in without}
    try:
        if path.is_file():
            pipe = StableDiffusionPipeline.from_single_file(
                str(path), config=str(config_path), local_files_only=True, dtype=dtype,
                safety_checker=None, requires_safety_checker=False, **skipped,
            )
            # diffusers leaves weights the file lacks on the meta device instead of failing; refuse them here.
            for name in ("unet", "vae", "text_encoder"):
                if name in skipped:
                    continue
                empty = [n for n, p in getattr(pipe, name).named_parameters() if p.is_meta]
                if empty:
                    raise CheckpointError(f"{path.name} is not a complete Stable Diffusion 1.5 checkpoint: the {name} "
                                          f"lacks {len(empty)} tensors (e.g. {empty[0]}).")
            return pipe
        if not (path / "unet").is_dir():
            raise CheckpointError(f"{str(path)!r} is not a diffusers Stable Diffusion folder (it has no unet/ folder).")
        return StableDiffusionPipeline.from_pretrained(
            str(path), dtype=dtype, local_files_only=True, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False, **skipped,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"Cannot load the Stable Diffusion 1.5 model {str(path)!r}: {err}") from err


def _set_attention_backend(pipe: StableDiffusionPipeline, attention: str) -> None:
    if attention == "xformers":
        try:
            pipe.enable_xformers_memory_efficient_attention()
        except (ImportError, ModuleNotFoundError, ValueError) as err:
            raise BackendUnavailableError(f"`attention` xformers needs the xformers package: {err}",
                                          field="attention") from err
    elif attention == "sliced":
        pipe.enable_attention_slicing("auto")

