"""The studio's engine: identity-preserving text-to-image and inpainting, over diffusers' own pipelines.

`Engine.generate` and `Engine.inpaint` are what the CLI and the UI call. A run has four stages:
1. inputs (reference photos, the template and its mask) — what can fail fast, before any model loads;
2. load (`_load`): the models, downloading if needed, configured and used under one hold of the GPU lock;
3. encode (`_encode`): face tokens and prompt embeddings through `facestudio.fact.face_conditioning`, and the
   pipeline's fixed inputs (crop, mask, pose);
4. render (`_render`): one diffusers pipeline call per image, the similarity, a PNG with its `GenerationRecord`.
Image `i` uses seed + i with its own CPU generator and its own pipeline call, so any single image is regenerated
bit-for-bit from its PNG.

The negative branch gets the "no face" embedding when `face_cfg` is on (FACT.md §4). The "delayed face
condition" is a step callback that switches the strength from 0 to `s` after `face_delay_steps` steps. Requests are
frozen: the engine works on copies (`dataclasses.replace`) and never changes what its caller holds.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from facestudio import __version__
from facestudio.engine.clip_score import clip_scores
from facestudio.engine.compositing import CropBox, crop_around_mask, paste_back, working_size
from facestudio.engine.devices import out_of_memory_guard
from facestudio.engine.hub import DownloadCallback, DownloadPlan
from facestudio.engine.likeness import StrengthComparison, StrengthPoint, recommend_strength
from facestudio.engine.manager import AdaptedBaseModel, LoadedFile, ModelManager, SDPipeline
from facestudio.engine.metadata import FileDigest, GenerationRecord
from facestudio.engine.references import ReferenceFaces, prepare_references, result_similarity
from facestudio.engine.registry import is_remote_lora
from facestudio.engine.release import (
    RELEASE_CFG,
    RELEASE_SCHEDULER,
    ReleaseTemplate,
    release_template,
    run_release_stages,
)
from facestudio.engine.requests import (
    FACE_FIX_AUTO_SHARE,
    FACE_FIX_STRENGTH,
    MAX_SEED,
    FaceAssignment,
    GenerateRequest,
    InpaintRequest,
    ModelChoice,
    check_strengths,
    reference_max_side,
)
from facestudio.engine.schedulers import SCHEDULERS, make_scheduler
from facestudio.errors import FaceNotFoundError, InvalidRequestError
from facestudio.face import load_image
from facestudio.face.align import to_unit_range
from facestudio.face.identity import Similarity, compare
from facestudio.face.types import Face
from facestudio.fact import FaceConditionedEmbeds, TransFace, face_conditioning

logger = logging.getLogger(__name__)

# Random seeds leave room for `seed + i` of the largest batch.
MAX_IMAGES_GUARD = 64


@dataclass(frozen=True)
class StepProgress:
    """Where a generation is: image `image` (0-based) of `num_images`, denoising step `step` of `steps`."""

    image: int
    num_images: int
    step: int
    steps: int

    @property
    def fraction(self) -> float:
        return (self.image + self.step / max(self.steps, 1)) / max(self.num_images, 1)


StepCallback = Callable[[StepProgress], None]
StopCheck = Callable[[], bool]
#: How a best-of-N candidate is scored: higher is more alike; `None` (no face found) ranks last.
CandidateScorer = Callable[["GeneratedImage"], "float | None"]


@dataclass
class GeneratedImage:
    image: Image.Image
    seed: int
    similarity: Similarity | None
    record: GenerationRecord
    path: Path | None = None


@dataclass
class GenerationResult:
    images: list[GeneratedImage] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cancelled: bool = False

    @property
    def seed(self) -> int | None:
        return self.images[0].seed if self.images else None


@dataclass(frozen=True)
class _Callbacks:
    on_step: StepCallback | None = None
    should_stop: StopCheck | None = None
    on_download: DownloadCallback | None = None

    def stop_requested(self) -> bool:
        return self.should_stop is not None and self.should_stop()


@dataclass(frozen=True, eq=False)
class _Template:
    """Inpainting's inputs: the template photo, the face being replaced, the blend mask (template size) and the
    crop box around it."""

    image: Image.Image
    face: Face | None
    alpha: np.ndarray
    box: CropBox


_File = TypeVar("_File", bound="LoadedFile | None")


def _named(loaded: _File, spec: str | None) -> _File:
    """`loaded` under the name this request gave it: a model cached by an earlier request keeps that request's
    name otherwise (the same file linked into the home and named from outside it), and the PNG must record ours."""
    if loaded is None or not spec:
        return loaded
    return dataclasses.replace(loaded, spec=str(spec))


@dataclass(frozen=True)
class _Loaded:
    """Stage 2: the models of one request, and the request naming them as they were loaded."""

    model: AdaptedBaseModel
    pipe: SDPipeline
    encoder: TransFace
    uses_controlnet: bool
    files: dict[str, LoadedFile | None]
    request: GenerateRequest
    pose_pipe: SDPipeline | None = None  # the release recipe's stage-1 pipeline (OpenPose text-to-image)
    fix_pipe: SDPipeline | None = None  # text-to-image's face fix: the one-pass inpainting pipeline

    @property
    def models(self) -> dict[str, dict[str, str] | None]:
        return {kind: file.to_dict() if file else None for kind, file in self.files.items()}


@dataclass(frozen=True)
class _Encoded:
    """Stage 3: what every image of one request shares besides the models."""

    conditioning: FaceConditionedEmbeds
    pipeline_inputs: dict[str, Any]
    steps_run: int
    digests: dict[str, FileDigest]
    crop_box: tuple[int, int, int, int] | None = None
    working_size: tuple[int, int] | None = None


class Engine:
    """Identity-preserving generation over a `ModelManager` (which owns every loaded model).

    Example:
        ```py
        >>> engine = Engine(ModelManager(EngineSettings(home=Path.home() / ".cache/facestudio",
        ...                                             placement=select_device())))
        >>> result = engine.generate(GenerateRequest(faces=["me.jpg"], prompt="a portrait in a garden", seed=1),
        ...                          out_dir=Path("out"))
        >>> result.images[0].path, result.images[0].similarity
        ```
    """

    def __init__(self, manager: ModelManager):
        self.manager = manager

    # ------------------------------------------------------------------------------------------------ planning

    def needed_downloads(self, request: GenerateRequest) -> list[DownloadPlan]:
        """What a request would download, with sizes, so a front can say so before starting."""
        manager = self.manager
        base = manager.source("base_model", request.models.base_model)
        sources = [base, manager.adapter_source(base, request.models.adapter),
                   manager.source("face_encoder", request.models.face_encoder)]
        release = isinstance(request, InpaintRequest) and request.recipe == "release"
        if request.uses_pose or release:
            sources.append(manager.source("controlnet", request.models.controlnet))
        if release:
            sources.append(manager.source("controlnet", request.models.canny_controlnet
                                          or manager.registry.default_for("canny_controlnet")))
        if is_remote_lora(request.lora, manager.registry):
            sources.append(manager.source("lora", request.lora))
        return manager.needed_downloads(sources)

    # ------------------------------------------------------------------------------------------------ entry points

    def generate(self, request: GenerateRequest, *, out_dir: Path | None = None, on_step: StepCallback | None = None,
                 should_stop: StopCheck | None = None, on_download: DownloadCallback | None = None,
                 scorer: CandidateScorer | None = None) -> GenerationResult:
        """Text-to-image with the identity of the reference photos; saves PNGs into `out_dir` when given.

        With `request.best_of` N > 1, N candidates (seeds seed..seed+N-1) are made and ranked by `scorer` (default:
        the identity score), and the best `request.keep` are returned (and saved), best first.
        """
        request = request.checked()
        callbacks = _Callbacks(on_step, should_stop, on_download)
        if request.best_of > 1:
            return self._best_of(request, out_dir, callbacks, scorer or identity_score)
        return self._run(request, self._variants(request), out_dir, callbacks)

    def _best_of(self, request: GenerateRequest, out_dir: Path | None, callbacks: _Callbacks,
                 scorer: CandidateScorer) -> GenerationResult:
        """Every candidate is made unsaved, then the kept ones are written, each recording all candidates."""
        seed = self._seed(dataclasses.replace(request, num_images=request.best_of))
        single = dataclasses.replace(request, best_of=1, keep=1)  # what makes each kept image again, alone
        variants = [dataclasses.replace(single, seed=seed + i) for i in range(request.best_of)]
        made = self._run(single, variants, None, callbacks)
        ranked = rank_candidates(made.images, scorer)
        place = {id(image): (rank, score) for rank, (image, score) in enumerate(ranked)}
        candidates = []
        for image in made.images:  # in seed order
            rank, score = place[id(image)]
            candidates.append({"seed": image.seed, "score": None if score is None else round(float(score), 4),
                               "rank": rank + 1, "kept": rank < request.keep})
        result = GenerationResult(warnings=made.warnings, cancelled=made.cancelled)
        for image, _ in ranked[:request.keep]:
            image.record = dataclasses.replace(image.record, candidates=tuple(candidates))
            if out_dir is not None:
                image.path = image.record.to_png(image.image, _output_path(out_dir, request.mode, image.seed),
                                                 home=self.manager.settings.home)
            result.images.append(image)
        return result

    def inpaint(self, request: InpaintRequest, *, out_dir: Path | None = None, on_step: StepCallback | None = None,
                should_stop: StopCheck | None = None, on_download: DownloadCallback | None = None
                ) -> GenerationResult:
        """Paint the reference identity into one face of a template photo; the result has the template's size."""
        request = request.checked()
        return self._run(request, self._variants(request), out_dir, _Callbacks(on_step, should_stop, on_download))

    def compare_strengths(self, request: GenerateRequest, strengths: Sequence[float], *, out_dir: Path | None = None,
                          on_step: StepCallback | None = None, should_stop: StopCheck | None = None,
                          on_download: DownloadCallback | None = None) -> GenerationResult:
        """The same seed at several face strengths, one image each, in the order given.

        Everything but FACT's `s` is shared (references, face tokens, prompt embeddings, seed), so the images show
        the trade-off between likeness and following the prompt; each carries its identity similarity. The face
        fix and best of N are off here: they would hide what the strength alone does.
        """
        strengths = check_strengths(strengths)
        request = dataclasses.replace(request, num_images=1, face_fix="off", best_of=1, keep=1).checked()
        seed = self._seed(request)
        variants = [dataclasses.replace(request, seed=seed, face_strength=s) for s in strengths]
        return self._run(request, variants, out_dir, _Callbacks(on_step, should_stop, on_download))

    def compare_likeness(self, request: GenerateRequest, strengths: Sequence[float] | str, *,
                         out_dir: Path | None = None, clip_model: str | None = None,
                         on_step: StepCallback | None = None, should_stop: StopCheck | None = None,
                         on_download: DownloadCallback | None = None
                         ) -> tuple[GenerationResult, StrengthComparison]:
        """`compare_strengths` plus each image's CLIP score against the prompt and a recommended strength
        (`likeness.recommend_strength`). The CLIP model (default `clip-vit-l14`) is loaded first, so a missing
        one fails before any image is made."""
        strengths = check_strengths(strengths)
        dataclasses.replace(request, num_images=1, face_fix="off", best_of=1, keep=1).checked()
        with self.manager.gpu_lock:
            scorer, clip_file = self.manager.clip_scorer(clip_model, on_download)
        result = self.compare_strengths(request, strengths, out_dir=out_dir, on_step=on_step,
                                        should_stop=should_stop, on_download=on_download)
        with self.manager.gpu_lock:
            scores = clip_scores([made.image for made in result.images], request.prompt, scorer)
        threshold = float(self.manager.analyzer().embedder.threshold)
        points = tuple(
            StrengthPoint(strength, None if made.similarity is None else round(made.similarity.similarity, 4),
                          made.similarity is not None and made.similarity.similarity >= threshold, score,
                          made.path.name if made.path is not None else "")
            for strength, made, score in zip(strengths, result.images, scores, strict=False))
        recommended, reason = recommend_strength(points, threshold)
        return result, StrengthComparison(request.prompt, int(result.seed or 0), threshold, points, recommended,
                                          reason, clip_file.spec)

    def regenerate(self, png: str | Path, *, faces: list[str] | None = None, models: ModelChoice | None = None,
                   out_dir: Path | None = None, on_step: StepCallback | None = None,
                   should_stop: StopCheck | None = None, on_download: DownloadCallback | None = None
                   ) -> GenerationResult:
        """Make the image stored in a FaceStudio PNG again, from its record (same seed, models, inputs).

        A record names files inside the studio's home relative to it (found there again) and others by their name
        only (see `metadata.portable`): `faces` replaces the reference photo paths (for photos that moved, or that
        were never in the home); their contents must be unchanged. The fields `models` gives (not `None`) replace
        the record's models; a model whose SHA-256 differs is warned about.
        """
        name = Path(png).name
        record = GenerationRecord.from_png(png, home=self.manager.settings.home)  # its files found in the home
        request = record.to_request()
        expected = [entry["sha256"] for entry in record.references]
        if faces:
            if expected and len(faces) != len(expected):
                raise InvalidRequestError(f"{name} was made from {len(expected)} reference photo(s); got {len(faces)}.",
                                          field="faces")
            request = dataclasses.replace(request, faces=tuple(str(f) for f in faces))
        if models is not None:
            given = {f.name: getattr(models, f.name) for f in dataclasses.fields(models)}
            request = dataclasses.replace(request, models=dataclasses.replace(
                request.models, **{key: value for key, value in given.items() if value is not None}))
        self._check_unchanged(request.faces, expected, name)
        if isinstance(request, InpaintRequest) and request.assignments:
            faces_stages = [stage for stage in record.stages if stage.get("stage") == "face"]
            for assignment, stage in zip(request.assignments, faces_stages, strict=False):
                self._check_unchanged(assignment.faces, [str(r.get("sha256")) for r in stage.get("references", [])],
                                      name)
        for digest, path in ((record.template, getattr(request, "image", None)),
                             (record.mask_file, getattr(request, "mask", None)), (record.pose_image, request.pose)):
            if digest is not None and path is not None:
                self._check_unchanged([path], [digest.sha256], name)
        placement = self.manager.placement
        if record.device and (record.device != placement.device.type or record.dtype != placement.dtype_name):
            logger.warning("%s was made on %s/%s; on %s/%s the result will be close but not bit-identical.",
                           name, record.device, record.dtype, placement.device.type, placement.dtype_name)
        request = request.checked()
        return self._run(request, [request], out_dir, _Callbacks(on_step, should_stop, on_download),
                         expected_models=record.models)

    def _check_unchanged(self, paths: Sequence[str], digests: list[str], png_name: str) -> None:
        for path, digest in zip(paths, digests, strict=False):
            if not Path(path).is_file():
                raise InvalidRequestError(f"{path} (used to make {png_name}) is missing; pass the same file again "
                                          "(or put it back) to regenerate.", field="faces")
            if self.manager.hashes.file(Path(path)) != digest:
                raise InvalidRequestError(f"{path} differs from the file {png_name} was made from (SHA-256 "
                                          "mismatch); the same image cannot be regenerated from it.")

    @staticmethod
    def _seed(request: GenerateRequest) -> int:
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED - MAX_IMAGES_GUARD)
        if seed + request.num_images - 1 > MAX_SEED:
            raise InvalidRequestError(f"`seed` {seed} + {request.num_images} images passes the largest seed "
                                      f"{MAX_SEED}.", field="seed")
        return seed

    def _variants(self, request: GenerateRequest) -> list[GenerateRequest]:
        """One request per image: image i has seed + i."""
        seed = self._seed(request)
        return [dataclasses.replace(request, seed=seed + i, num_images=1) for i in range(request.num_images)]

    # ------------------------------------------------------------------------------------------------ the run

    def _run(self, request: GenerateRequest, variants: list[GenerateRequest], out_dir: Path | None,
             callbacks: _Callbacks, expected_models: dict | None = None) -> GenerationResult:
        if isinstance(request, InpaintRequest) and request.assignments:
            return self._run_assignments(request, variants, out_dir, callbacks, expected_models)
        if isinstance(request, InpaintRequest) and request.recipe == "release":
            return self._run_release(request, variants, out_dir, callbacks, expected_models)
        manager = self.manager
        result = GenerationResult()

        # 1. Inputs that can fail fast (bad photos, no face) before any big model is loaded.
        references = prepare_references(manager.analyzer(), list(request.faces), manager.hashes,
                                        manager.settings.max_pixels, reference_max_side(request))
        result.warnings.extend(references.warnings)
        template = self._template(request) if isinstance(request, InpaintRequest) else None

        # 2-4. Models configured and used under one hold of the GPU lock, so a concurrent request cannot swap the
        # base model or the LoRA between configuration and use.
        with manager.gpu_lock:
            loaded = self._load(request, template is not None, callbacks.on_download)
            result.warnings.extend(_model_differences(expected_models, loaded.models))
            with out_of_memory_guard(manager.placement, self._doing(request)):
                encoded = self._encode(loaded, references, template)
                variants = [dataclasses.replace(v, models=loaded.request.models) for v in variants]
                self._render(variants, loaded, encoded, references, template, result, out_dir, callbacks)
        if result.cancelled:
            logger.info("Stopped after %d image(s).", len(result.images))
        return result

    def _load(self, request: GenerateRequest, inpainting: bool, on_download: DownloadCallback | None) -> _Loaded:
        """Stage 2: base model + adapter, face encoder, ControlNet and LoRA (the caller holds the GPU lock)."""
        manager = self.manager
        model = manager.adapted_base(request.models.base_model, request.models.adapter, on_download)
        encoder, encoder_file = manager.face_encoder(request.models.face_encoder, on_download)
        controlnet = controlnet_file = None
        if request.uses_pose:
            controlnet, controlnet_file = manager.controlnet(request.models.controlnet, on_download)
        lora_file = manager.apply_lora(model, request.lora, request.lora_scale)
        kind = ("inpaint" if inpainting else "txt2img") + ("+pose" if controlnet is not None else "")
        with out_of_memory_guard(manager.placement, self._doing(request)):
            pipe = manager.pipeline(model, kind, controlnet)
            fix_pipe = manager.pipeline(model, "inpaint") if not inpainting and request.face_fix != "off" else None
        base_file, adapter_file = _named(model.base, request.models.base_model), _named(model.adapter_file,
                                                                                          request.models.adapter)
        encoder_file = _named(encoder_file, request.models.face_encoder)
        controlnet_file = _named(controlnet_file, request.models.controlnet)
        files: dict[str, LoadedFile | None] = {
            "base_model": base_file, "fact_adapter": adapter_file, "face_encoder": encoder_file,
            "controlnet": controlnet_file, "lora": lora_file}
        # The request as run names the models as they were resolved (a default becomes its registry name), which is
        # what its PNG records and `--from-png` loads again.
        as_run = dataclasses.replace(request, models=ModelChoice(
            base_model=base_file.spec, adapter=adapter_file.spec, face_encoder=encoder_file.spec,
            controlnet=controlnet_file.spec if controlnet_file else request.models.controlnet))
        return _Loaded(model, pipe, encoder, controlnet is not None, files, as_run, fix_pipe=fix_pipe)

    @staticmethod
    def _doing(request: GenerateRequest) -> str:
        what = "inpainting" if isinstance(request, InpaintRequest) else "generating"
        return f"{what} {request.num_images} image(s) at {request.width}x{request.height}"

    def _template(self, request: InpaintRequest) -> _Template:
        """Stage 1 of inpainting: the template, the face being replaced, the blend mask and the crop box."""
        analyzer = self.manager.analyzer()
        name = Path(request.image).name
        template = load_image(request.image, name=name, max_pixels=self.manager.settings.max_pixels)
        analysis = analyzer.analyze(template)
        face = None
        if request.mask_region is not None:
            face = analyzer.select_face(analysis, request.face_index, name)
            alpha = self._face_alpha(template, face, request.mask_region, request.mask_dilate_px,
                                     request.mask_feather_px)
        else:
            alpha = _load_mask(request.mask, template.size, self.manager.settings.max_pixels)
            height, width = alpha.shape
            covered = [f for f in analysis.faces
                       if alpha[min(max(int(f.center[1]), 0), height - 1), min(max(int(f.center[0]), 0), width - 1)] > 0]
            if covered:  # the face under the mask, for the similarity shown with the result
                face = covered[0]
        box = crop_around_mask(alpha, request.width / request.height)
        return _Template(template, face, alpha, box)

    def _face_alpha(self, image: Image.Image, face: Face, region: str, dilate_px: int | None,
                    feather_px: int | None, others: Sequence[Face] = ()) -> np.ndarray:
        """The automatic blend mask of one face (`float32[H, W]`), zero on the boxes of `others` (outside this
        face's own box), so painting one face never touches another."""
        parsing = self.manager.analyzer().parse(image, face)
        alpha = parsing.inpaint_mask(region, dilate_px, feather_px)
        if others:
            height, width = alpha.shape
            own = np.zeros_like(alpha, dtype=bool)
            x0, y0, x1, y1 = _pixel_box(face.bbox, width, height)
            own[y0:y1, x0:x1] = True
            for other in others:
                x0, y0, x1, y1 = _pixel_box(other.bbox, width, height)
                block = alpha[y0:y1, x0:x1]
                block[~own[y0:y1, x0:x1]] = 0.0
        return alpha

    def _encode(self, loaded: _Loaded, references: ReferenceFaces, template: _Template | None) -> _Encoded:
        """Stage 3: face tokens and prompt embeddings (both CFG branches), and the pipeline's fixed inputs."""
        request = loaded.request
        conditioning = self._conditioning(loaded, references, request.cfg)

        inputs: dict[str, Any] = {}
        digests: dict[str, FileDigest] = {}
        width, height = request.width, request.height
        steps_run = request.steps
        crop_box = size = None
        if template is not None and isinstance(request, InpaintRequest):
            crop_inputs, steps_run, (width, height) = _crop_inputs(template.image, template.alpha, template.box,
                                                                   request)
            inputs.update(crop_inputs)
            digests["template"] = self._digest(request.image)
            if request.mask_region is None:
                digests["mask_file"] = self._digest(request.mask)
            crop_box, size = template.box.as_tuple(), (width, height)
        if request.pose is not None:
            inputs["control_image" if template is not None else "image"] = self._pose_image(
                request.pose, request.pose_mode, width, height)
            inputs["controlnet_conditioning_scale"] = request.pose_strength
            digests["pose_image"] = self._digest(request.pose)
        inputs.update(width=width, height=height)
        return _Encoded(conditioning, inputs, steps_run, digests, crop_box, size)

    @staticmethod
    def _conditioning(loaded: _Loaded, references: ReferenceFaces, cfg: float) -> FaceConditionedEmbeds:
        """Face tokens (TransFace -> FACT resampler) appended to the prompt embeddings of both CFG branches."""
        request, pipe = loaded.request, loaded.pipe
        device = pipe._execution_device
        crops = torch.from_numpy(np.stack([to_unit_range(c) for c in references.crops])).float()
        encoder_device = next(loaded.encoder.parameters()).device
        with torch.no_grad():
            face_features = loaded.encoder(crops.to(encoder_device))  # TransFace, float32: [N, 144, D]
            prompt_embeds, negative_embeds = pipe.encode_prompt(request.prompt, device, 1, cfg > 1.0,
                                                                request.negative_prompt)
            return face_conditioning(loaded.model.adapter, prompt_embeds, face_features,
                                     negative_prompt_embeds=negative_embeds, face_cfg=request.face_cfg)

    # ------------------------------------------------------------------------------------- the release recipe

    def _run_release(self, request: InpaintRequest, variants: list[GenerateRequest], out_dir: Path | None,
                     callbacks: _Callbacks, expected_models: dict | None) -> GenerationResult:
        """The release's template inpainting (`facestudio.engine.release`), one image per variant."""
        manager = self.manager
        result = GenerationResult()
        references = prepare_references(manager.analyzer(), list(request.faces), manager.hashes,
                                        manager.settings.max_pixels, reference_max_side(request))
        result.warnings.extend(references.warnings)
        name = Path(request.image).name
        image = load_image(request.image, name=name, max_pixels=manager.settings.max_pixels)
        side = min(request.width, request.height)
        template = release_template(manager.analyzer(), image, request.face_index, name, side)
        digests = {"template": self._digest(request.image)}
        with manager.gpu_lock:
            loaded = self._load_release(request, callbacks.on_download)
            result.warnings.extend(_model_differences(expected_models, loaded.models))
            with out_of_memory_guard(manager.placement, self._doing(request)):
                conditioning = self._conditioning(loaded, references, RELEASE_CFG)
                encoded = _Encoded(conditioning, {}, request.steps, digests, template.crop.as_tuple(),
                                   (side, side))
                variants = [dataclasses.replace(v, models=loaded.request.models) for v in variants]
                for index, variant in enumerate(variants):
                    if callbacks.stop_requested():
                        result.cancelled = True
                        break
                    made = self._release_image(variant, loaded, conditioning, template, index, len(variants),
                                               callbacks)
                    if made is None:
                        result.cancelled = True
                        break
                    final, stages = made
                    similarity = result_similarity(manager.analyzer(), final, references, near=template.face)
                    record = dataclasses.replace(
                        self._record(variant, loaded, encoded, references, None, index, final, similarity),
                        template_face_bbox=tuple(round(float(v), 1) for v in template.face.bbox),
                        stages=tuple(stages))
                    generated = GeneratedImage(final, record.seed, similarity, record)
                    if out_dir is not None:
                        generated.path = record.to_png(final, _output_path(out_dir, variant.mode, record.seed),
                                                       home=manager.settings.home)
                    result.images.append(generated)
        return result

    # ------------------------------------------------------------------------------------- several people

    def fix_faces(self, request: InpaintRequest, face_indexes: Sequence[int] | None = None, *,
                  out_dir: Path | None = None, on_step: StepCallback | None = None,
                  should_stop: StopCheck | None = None, on_download: DownloadCallback | None = None
                  ) -> GenerationResult:
        """The face fix on an existing image: faces `face_indexes` (default: every face found) inpainted again
        with the identity of `request.faces`. The result is an inpainting with one assignment per face, so its PNG
        regenerates like any other; each face's score before and after is in `record.stages`."""
        if not request.image:
            raise InvalidRequestError("Give the image whose faces to fix.", field="image")
        if not request.faces:
            raise InvalidRequestError("Give at least one reference photo of the face.", field="faces")
        if face_indexes is None or len(face_indexes) == 0:
            name = Path(request.image).name
            image = load_image(request.image, name=name, max_pixels=self.manager.settings.max_pixels)
            count = len(self.manager.analyzer().analyze(image).faces)
            if count == 0:
                raise FaceNotFoundError(f"No face found in {name}; there is nothing to fix.")
            face_indexes = list(range(count))
        assignments = tuple(FaceAssignment(int(i), request.faces) for i in face_indexes)
        return self.inpaint(dataclasses.replace(request, assignments=assignments), out_dir=out_dir,
                            on_step=on_step, should_stop=should_stop, on_download=on_download)

    def _run_assignments(self, request: InpaintRequest, variants: list[GenerateRequest], out_dir: Path | None,
                         callbacks: _Callbacks, expected_models: dict | None) -> GenerationResult:
        """Several people in one template: each assigned face painted with its own person, one after another on
        the same image (faces chosen and masked on the untouched template; each mask is zero on every other face,
        so faces not listed stay bit-identical). One image per variant, every assignment in its record."""
        manager = self.manager
        analyzer = manager.analyzer()
        result = GenerationResult()
        # 1. Inputs: every person's photos and every face's mask, before any model loads.
        people = []
        for assignment in request.assignments:
            people.append(prepare_references(analyzer, list(assignment.faces), manager.hashes,
                                             manager.settings.max_pixels))
            result.warnings.extend(people[-1].warnings)
        name = Path(request.image).name
        source = load_image(request.image, name=name, max_pixels=manager.settings.max_pixels)
        analysis = analyzer.analyze(source)
        templates = []
        for assignment in request.assignments:
            face = analyzer.select_face(analysis, assignment.face_index, name)
            alpha = self._face_alpha(source, face, request.mask_region or "face", request.mask_dilate_px,
                                     request.mask_feather_px, [f for f in analysis.faces if f is not face])
            if not (alpha > 0).any():
                raise FaceNotFoundError(f"Face {assignment.face_index} of {name} has no face region the parser "
                                        "could find; choose another face.")
            templates.append(_Template(source, face, alpha, crop_around_mask(alpha, request.width / request.height)))
        release = request.recipe == "release"
        side = min(request.width, request.height)
        digests = {"template": self._digest(request.image)}
        cfg = RELEASE_CFG if release else request.cfg
        with manager.gpu_lock:
            loaded = (self._load_release(request, callbacks.on_download) if release
                      else self._load(request, True, callbacks.on_download))
            result.warnings.extend(_model_differences(expected_models, loaded.models))
            with out_of_memory_guard(manager.placement, self._doing(request)):
                conditionings = [self._conditioning(loaded, refs, cfg) for refs in people]
                encoded = _Encoded(conditionings[0], {}, request.steps, digests)
                variants = [dataclasses.replace(v, models=loaded.request.models) for v in variants]
                for index, variant in enumerate(variants):
                    assert isinstance(variant, InpaintRequest)
                    if callbacks.stop_requested():
                        result.cancelled = True
                        break
                    image: Image.Image | None = source
                    stages: list[dict[str, Any]] = []
                    for assignment, refs, template, conditioning in zip(request.assignments, people, templates,
                                                                        conditionings, strict=True):
                        assert image is not None
                        stage: dict[str, Any] = {
                            "stage": "face", "face_index": assignment.face_index, "identity": assignment.identity,
                            "references": [{"name": n, "sha256": h} for n, h in zip(refs.names, refs.sha256,
                                                                                   strict=True)],
                            "face_bbox": [round(float(v), 1) for v in template.face.bbox]}  # type: ignore[union-attr]
                        if release:
                            made = self._release_image(
                                variant, loaded, conditioning,
                                release_template(analyzer, image, assignment.face_index, name, side, analysis),
                                index, len(variants), callbacks)
                            image = None if made is None else made[0]
                            stage["stages"] = [] if made is None else made[1]
                        else:
                            image = self._paint_face(image, template, variant, loaded, conditioning, index,
                                                     len(variants), callbacks)
                            stage["crop_box"] = list(template.box.as_tuple())
                        if image is None:
                            break
                        stages.append(stage)
                    if image is None:
                        result.cancelled = True
                        break
                    after = analyzer.analyze(image).faces
                    for stage, refs, template in zip(stages, people, templates, strict=True):
                        assert template.face is not None
                        stage["similarity_before"] = _face_score(analyzer, source, template.face,
                                                                 refs.mean_embedding)
                        near = _nearest(after, template.face.bbox)
                        stage["similarity_after"] = (None if near is None
                                                     else _face_score(analyzer, image, near, refs.mean_embedding))
                    similarity = result_similarity(analyzer, image, people[0], near=templates[0].face)
                    record = dataclasses.replace(
                        self._record(variant, loaded, encoded, people[0], templates[0], index, image, similarity),
                        references=(), stages=tuple(stages))
                    generated = GeneratedImage(image, record.seed, similarity, record)
                    if out_dir is not None:
                        generated.path = record.to_png(image, _output_path(out_dir, variant.mode, record.seed),
                                                       home=self.manager.settings.home)
                    result.images.append(generated)
        return result

    def _load_release(self, request: InpaintRequest, on_download: DownloadCallback | None) -> _Loaded:
        """The ControlNets first (a missing one fails before the base model loads), then base, encoder, LoRA."""
        manager = self.manager
        pose_net, pose_file = manager.controlnet(request.models.controlnet, on_download)
        canny_spec = request.models.canny_controlnet or manager.registry.default_for("canny_controlnet")
        canny_net, canny_file = manager.controlnet(canny_spec, on_download)
        model = manager.adapted_base(request.models.base_model, request.models.adapter, on_download)
        encoder, encoder_file = manager.face_encoder(request.models.face_encoder, on_download)
        lora_file = manager.apply_lora(model, request.lora, request.lora_scale)
        with out_of_memory_guard(manager.placement, self._doing(request)):
            pose_pipe = manager.pipeline(model, "txt2img+pose", pose_net)
            pipe = manager.pipeline(model, "inpaint+pose+canny", [pose_net, canny_net])
        base_file, adapter_file = _named(model.base, request.models.base_model), _named(model.adapter_file,
                                                                                          request.models.adapter)
        encoder_file = _named(encoder_file, request.models.face_encoder)
        pose_file, canny_file = _named(pose_file, request.models.controlnet), _named(canny_file, canny_spec)
        files: dict[str, LoadedFile | None] = {
            "base_model": base_file, "fact_adapter": adapter_file, "face_encoder": encoder_file,
            "controlnet": pose_file, "canny_controlnet": canny_file, "lora": lora_file}
        as_run = dataclasses.replace(request, models=ModelChoice(
            base_model=base_file.spec, adapter=adapter_file.spec, face_encoder=encoder_file.spec,
            controlnet=pose_file.spec, canny_controlnet=canny_file.spec))
        return _Loaded(model, pipe, encoder, True, files, as_run, pose_pipe)

    def _release_image(self, request: GenerateRequest, loaded: _Loaded, conditioning: FaceConditionedEmbeds,
                       template: ReleaseTemplate, index: int, total: int,
                       callbacks: _Callbacks) -> tuple[Image.Image, list[dict[str, Any]]] | None:
        """One image of the release recipe: its stages, each a pipeline call seeded with the image's seed."""
        assert isinstance(request, InpaintRequest)
        adapter = loaded.model.adapter

        def call(stage: str, kind: str, strength: float, inputs: dict[str, Any]) -> Image.Image | None:
            pipe = loaded.pose_pipe if kind == "pose" else loaded.pipe
            assert pipe is not None
            inputs = dict(inputs)
            steps = int(inputs.pop("num_inference_steps"))
            pipe.scheduler = make_scheduler(RELEASE_SCHEDULER, loaded.model.scheduler_config)
            adapter.set_scale(strength)
            conditioning.bind_controlnets(adapter)
            stopped = False

            def step_end(pipeline: SDPipeline, step: int, timestep: torch.Tensor,
                         callback_kwargs: dict[str, Any]) -> dict[str, Any]:
                nonlocal stopped
                if callbacks.on_step is not None:
                    callbacks.on_step(StepProgress(index, total, step + 1, steps))
                if callbacks.stop_requested():
                    stopped = True
                    pipeline._interrupt = True
                return callback_kwargs

            try:
                output = pipe(prompt_embeds=conditioning.prompt_embeds,
                              negative_prompt_embeds=conditioning.negative_prompt_embeds,
                              cross_attention_kwargs=conditioning.cross_attention_kwargs,
                              num_inference_steps=steps, guidance_scale=RELEASE_CFG,
                              generator=torch.Generator("cpu").manual_seed(int(request.seed or 0)),
                              output_type="pil", callback_on_step_end=step_end,  # type: ignore[arg-type]
                              **inputs)
            finally:
                adapter.set_scale(request.face_strength)
            if isinstance(output, tuple):
                raise TypeError("The pipeline returned a tuple; FaceStudio calls it with `return_dict` on.")
            return None if stopped else output.images[0]

        manager = self.manager
        made = run_release_stages(template, call, steps=request.steps, denoise=request.denoise,
                                  face_strength=request.face_strength, analyzer=manager.analyzer(),
                                  pose_estimator=manager.pose_estimator(), keypoints=manager.face_keypoint_model(),
                                  hands=manager.hand_model())
        if made is None:
            return None
        width, height = template.image.size
        box = template.crop.inside(width, height)
        final = paste_back(template.image, template.crop.uncut(made.crop, width, height), made.alpha, box)
        return final, made.stages

    def _digest(self, path: str) -> FileDigest:
        return FileDigest(str(Path(path).resolve()), self.manager.hashes.file(Path(path)))

    def _pose_image(self, pose: str, pose_mode: str, width: int, height: int) -> Image.Image:
        from facestudio.face.pose import pose_condition

        name = Path(pose).name
        source = load_image(pose, name=name, max_pixels=self.manager.settings.max_pixels)
        # Padded like the release (to the map's aspect ratio: a square for the release's 512x512), hands drawn too.
        return pose_condition(source, width, height, name=name, mode=pose_mode,
                              estimator=self.manager.pose_estimator(), pad=True, hands=self.manager.hand_model())

    def _render(self, variants: list[GenerateRequest], loaded: _Loaded, encoded: _Encoded,
                references: ReferenceFaces, template: _Template | None, result: GenerationResult,
                out_dir: Path | None, callbacks: _Callbacks) -> None:
        """Stage 4: denoise, paste back (inpainting), score and save each variant in turn; stops between or within
        images."""
        analyzer = self.manager.analyzer()
        for index, request in enumerate(variants):
            if callbacks.stop_requested():
                result.cancelled = True
                break
            image, stopped = self._denoise(request, loaded, encoded, index, len(variants), callbacks)
            if stopped:
                result.cancelled = True
                break
            if template is not None:
                image = paste_back(template.image, image, template.alpha, template.box)
            stages: list[dict[str, Any]] = []
            if loaded.fix_pipe is not None:
                fixed = self._face_fix(request, image, loaded, encoded, references, index, len(variants), callbacks)
                if fixed is None:
                    result.cancelled = True
                    break
                image, stages = fixed
            similarity = result_similarity(analyzer, image, references,
                                           near=template.face if template is not None else None)
            record = self._record(request, loaded, encoded, references, template, index, image, similarity)
            if stages:
                record = dataclasses.replace(record, stages=tuple(stages))
            generated = GeneratedImage(image, record.seed, similarity, record)
            if out_dir is not None:
                generated.path = record.to_png(image, _output_path(out_dir, request.mode, record.seed),
                                               home=self.manager.settings.home)
            result.images.append(generated)

    def _paint_face(self, image: Image.Image, template: _Template, request: InpaintRequest, loaded: _Loaded,
                    conditioning: FaceConditionedEmbeds, index: int, total: int,
                    callbacks: _Callbacks) -> Image.Image | None:
        """The one-pass crop inpainting (recipe `single`) of one face of `image`: crop around `template`'s mask at
        the working resolution, one pipeline call, paste back with the feathered mask. `None` when stopped."""
        inputs, steps_run, size = _crop_inputs(image, template.alpha, template.box, request)
        inputs.update(width=size[0], height=size[1])
        encoded = _Encoded(conditioning, inputs, steps_run, {}, template.box.as_tuple(), size)
        painted, stopped = self._denoise(request, loaded, encoded, index, total, callbacks)
        if stopped:
            return None
        return paste_back(image, painted, template.alpha, template.box)

    def _face_fix(self, request: GenerateRequest, image: Image.Image, loaded: _Loaded, encoded: _Encoded,
                  references: ReferenceFaces, index: int, total: int,
                  callbacks: _Callbacks) -> tuple[Image.Image, list[dict[str, Any]]] | None:
        """Text-to-image's second pass: each face to fix (`faces_to_fix`) inpainted again on its crop with the same
        references and prompt. Returns the image and the record's stages (none when no face needed it)."""
        analyzer = self.manager.analyzer()
        found = analyzer.analyze(image).faces
        faces = faces_to_fix(found, image.size, request.face_fix)
        if not faces:
            return image, []
        assert loaded.fix_pipe is not None
        fix_request = face_fix_request(request)
        fix_loaded = dataclasses.replace(loaded, pipe=loaded.fix_pipe, uses_controlnet=False, request=fix_request)
        stages: list[dict[str, Any]] = [{
            "stage": "text-to-image", "steps": request.steps, "scheduler": request.scheduler, "cfg": request.cfg,
            "face_strength": request.face_strength}]
        before = image
        for face in faces:
            alpha = self._face_alpha(before, face, "face", None, None, [f for f in found if f is not face])
            if not (alpha > 0).any():
                continue
            template = _Template(before, face, alpha, crop_around_mask(alpha, request.width / request.height))
            painted = self._paint_face(image, template, fix_request, fix_loaded, encoded.conditioning, index, total,
                                       callbacks)
            if painted is None:
                return None
            image = painted
            stages.append({"stage": "face-fix", "face_bbox": [round(float(v), 1) for v in face.bbox],
                           "crop_box": list(template.box.as_tuple()), "denoise": fix_request.denoise,
                           "face_strength": fix_request.face_strength,
                           "similarity_before": _face_score(analyzer, before, face, references.mean_embedding)})
        if len(stages) == 1:
            return before, []
        after = analyzer.analyze(image).faces
        for stage in stages[1:]:
            near = _nearest(after, np.asarray(stage["face_bbox"], np.float64))
            stage["similarity_after"] = (None if near is None
                                         else _face_score(analyzer, image, near, references.mean_embedding))
        return image, stages

    def _denoise(self, request: GenerateRequest, loaded: _Loaded, encoded: _Encoded, index: int, total: int,
                 callbacks: _Callbacks) -> tuple[Image.Image, bool]:
        """One pipeline call for one image; returns (image, stopped)."""
        pipe, adapter = loaded.pipe, loaded.model.adapter
        conditioning = encoded.conditioning
        pipe.scheduler = make_scheduler(request.scheduler, loaded.model.scheduler_config)
        delay = request.face_delay_steps
        if isinstance(request, InpaintRequest):  # inpainting runs only the last `denoise` share of the steps
            delay = min(delay, encoded.steps_run)
        adapter.set_scale(0.0 if delay > 0 else request.face_strength)
        if loaded.uses_controlnet:
            conditioning.bind_controlnets(adapter)
        stopped = False

        def step_end(pipeline: SDPipeline, step: int, timestep: torch.Tensor,
                     callback_kwargs: dict[str, Any]) -> dict[str, Any]:
            nonlocal stopped
            if step + 1 == delay:
                adapter.set_scale(request.face_strength)  # "delayed face condition": face on from here
            if callbacks.on_step is not None:
                callbacks.on_step(StepProgress(index, total, step + 1, encoded.steps_run))
            if callbacks.stop_requested():
                stopped = True
                pipeline._interrupt = True  # diffusers skips the remaining steps
            return callback_kwargs

        generator = torch.Generator("cpu").manual_seed(int(request.seed or 0))  # every variant has its own seed
        try:
            output = pipe(
                prompt_embeds=conditioning.prompt_embeds,
                negative_prompt_embeds=conditioning.negative_prompt_embeds,
                cross_attention_kwargs=conditioning.cross_attention_kwargs,
                num_inference_steps=request.steps,
                guidance_scale=request.cfg,
                generator=generator,
                output_type="pil",
                # diffusers annotates this `Callable[[int, int], None]`; it calls it as above and uses the dict.
                callback_on_step_end=step_end,  # type: ignore[arg-type]
                **encoded.pipeline_inputs,
            )
        finally:
            adapter.set_scale(request.face_strength)
        if isinstance(output, tuple):  # diffusers' declared alternative, for `return_dict=False` only
            raise TypeError("The pipeline returned a tuple; FaceStudio calls it with `return_dict` on.")
        return output.images[0], stopped

    def _record(self, request: GenerateRequest, loaded: _Loaded, encoded: _Encoded, references: ReferenceFaces,
                template: _Template | None, index: int, image: Image.Image,
                similarity: Similarity | None) -> GenerationRecord:
        import diffusers

        placement = self.manager.placement
        face = template.face if template is not None else None
        return GenerationRecord(
            request=request, image_index=index, width=image.width, height=image.height,
            scheduler_title=SCHEDULERS[request.scheduler].title, models=loaded.models,
            references=tuple(references.to_records()), device=placement.device.type, dtype=placement.dtype_name,
            similarity=similarity, template=encoded.digests.get("template"),
            mask_file=encoded.digests.get("mask_file"), pose_image=encoded.digests.get("pose_image"),
            crop_box=encoded.crop_box, working_size=encoded.working_size,
            template_face_bbox=tuple(round(float(v), 1) for v in face.bbox) if face is not None else None,
            facestudio_version=__version__, diffusers_version=diffusers.__version__, torch_version=torch.__version__,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )


def faces_to_fix(faces: Sequence[Face], size: tuple[int, int], mode: str) -> list[Face]:
    """The faces the face fix repaints: every face (`on`), those whose box is under `FACE_FIX_AUTO_SHARE` of the
    image's shorter side (`auto`: where text-to-image loses the likeness), none (`off`)."""
    if mode == "off":
        return []
    if mode == "on":
        return list(faces)
    limit = FACE_FIX_AUTO_SHARE * min(size)
    return [face for face in faces if max(face.width, face.height) < limit]


def face_fix_request(request: GenerateRequest) -> InpaintRequest:
    """The face fix's inpainting settings: the text-to-image request's references, prompt, seed and sampling, the
    one-pass recipe, `face_fix_denoise` and FACT's inpainting strength (`FACE_FIX_STRENGTH`). The schedule is long
    enough that the denoise runs at least one step."""
    return InpaintRequest(
        faces=request.faces, prompt=request.prompt, negative_prompt=request.negative_prompt, seed=request.seed,
        steps=max(request.steps, math.ceil(1.0 / request.face_fix_denoise)), cfg=request.cfg, width=request.width, height=request.height,
        face_strength=FACE_FIX_STRENGTH, face_cfg=request.face_cfg, scheduler=request.scheduler, lora=request.lora,
        lora_scale=request.lora_scale, models=request.models, recipe="single", image="(text-to-image)",
        denoise=request.face_fix_denoise)


def _crop_inputs(image: Image.Image, alpha: np.ndarray, box: CropBox,
                 request: InpaintRequest) -> tuple[dict[str, Any], int, tuple[int, int]]:
    """The inpainting pipeline's crop, mask and strength at the working resolution; the steps it runs."""
    width, height = working_size(box, request.width, request.height)
    crop = image.crop(box.as_tuple()).resize((width, height), Image.Resampling.LANCZOS)
    crop_mask = Image.fromarray(((alpha[box.top : box.bottom, box.left : box.right] > 0) * 255)
                                .astype(np.uint8)).resize((width, height), Image.Resampling.NEAREST)
    steps_run = max(1, min(int(request.steps * request.denoise), request.steps))
    return {"image": crop, "mask_image": crop_mask, "strength": request.denoise}, steps_run, (width, height)


def _pixel_box(bbox: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (float(v) for v in bbox)
    return (min(max(math.floor(x0), 0), width), min(max(math.floor(y0), 0), height),
            min(max(math.ceil(x1), 0), width), min(max(math.ceil(y1), 0), height))


def _nearest(faces: Sequence[Face], bbox: np.ndarray) -> Face | None:
    """The face whose centre is nearest the centre of `bbox`, if it lies inside that box."""
    center = np.array([(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2])
    inside = [f for f in faces if bbox[0] <= f.center[0] <= bbox[2] and bbox[1] <= f.center[1] <= bbox[3]]
    return min(inside, key=lambda f: float(np.linalg.norm(f.center - center))) if inside else None


def _face_score(analyzer: Any, image: Image.Image, face: Face, embedding: np.ndarray) -> float:
    """The identity similarity of one face of `image` to a person's mean embedding, rounded for the record."""
    return round(compare(analyzer.embedder, analyzer.embed(image, face), embedding).similarity, 4)


def identity_score(image: GeneratedImage) -> float | None:
    """The default best-of-N score: the identity similarity to the references (`None` when no face was found)."""
    return None if image.similarity is None else float(image.similarity.similarity)


def rank_candidates(images: Sequence[GeneratedImage], scorer: CandidateScorer
                    ) -> list[tuple[GeneratedImage, float | None]]:
    """`images` with their scores, best first; unscored ones (no face) last; ties keep seed order."""
    scored = [(image, scorer(image)) for image in images]
    order = sorted(range(len(scored)), key=lambda i: (scored[i][1] is None, -(scored[i][1] or 0.0), i))
    return [scored[i] for i in order]


def _load_mask(path: str, size: tuple[int, int], max_pixels: int) -> np.ndarray:
    """A mask image (white = repaint; grey = partly) as `float32[H, W]` of the template's size."""
    name = Path(path).name
    mask = load_image(path, name=name, max_pixels=max_pixels).convert("L")
    if mask.size != size:
        width, height = size
        if abs(mask.width / mask.height - width / height) > 0.01:
            raise InvalidRequestError(f"Mask {name} is {mask.width}x{mask.height} but the template is "
                                      f"{width}x{height}; give a mask with the template's size or aspect ratio.")
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _model_differences(expected: dict | None, actual: dict) -> list[str]:
    warnings = []
    for kind, entry in (expected or {}).items():
        now = actual.get(kind)
        if entry and now and entry.get("sha256") != now.get("sha256"):
            warnings.append(f"The {kind.replace('_', ' ')} {now['spec']} differs from the one the image was made "
                            "with (SHA-256 mismatch); the result will differ.")
    for warning in warnings:
        logger.warning(warning)
    return warnings


def _output_path(out_dir: Path, mode: str, seed: int) -> Path:
    """A new file name (never overwrites): `<mode>-<date>-<time>-<seed>[-n].png`."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(out_dir) / f"{mode}-{stamp}-{seed}.png"
    counter = 1
    while path.exists():
        path = Path(out_dir) / f"{mode}-{stamp}-{seed}-{counter}.png"
        counter += 1
    return path


