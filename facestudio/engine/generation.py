"""The studio's engine: identity-preserving text-to-image and inpainting, over diffusers' own pipelines.

`Engine.generate` and `Engine.inpaint` are what the CLI and the UI call. Each runs numbered stages:
check the request -> load models (downloading if needed) -> reference photos -> face tokens -> prompt embeddings
-> one diffusers pipeline call per image -> similarity -> PNG with full metadata. Image `i` uses seed + i with
its own CPU generator and its own pipeline call, so any single image is regenerated bit-for-bit from its PNG.

FACT's face tokens travel appended to the text embeddings (`prompt_embeds` = cat([text, face])); the negative
branch gets the "no face" embedding when `face_cfg` is on (FACT.md §4). The "delayed face condition" is a step
callback that switches the strength from 0 to `s` after `face_delay_steps` steps.
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
from typing import Any

import numpy as np
import torch
from PIL import Image

from facestudio import __version__
from facestudio.engine.compositing import CropBox, crop_around_mask, paste_back, working_size
from facestudio.engine.devices import out_of_memory_guard
from facestudio.engine.hub import DownloadCallback, DownloadPlan
from facestudio.engine.manager import ModelManager, StudioModel
from facestudio.engine.metadata import read_png_record, save_png
from facestudio.engine.references import ReferenceFaces, prepare_references, result_similarity
from facestudio.engine.requests import MAX_SEED, GenerateRequest, InpaintRequest
from facestudio.engine.schedulers import SCHEDULERS, make_scheduler
from facestudio.errors import InvalidRequestError
from facestudio.face import load_image
from facestudio.face.align import to_unit_range
from facestudio.face.identity import Similarity

logger = logging.getLogger(__name__)

# Random seeds leave room for `seed + i` of the largest batch.
MAX_IMAGES_GUARD = 64
# "Compare strengths" renders at most this many strengths side by side.
MAX_COMPARED_STRENGTHS = 8


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


@dataclass
class GeneratedImage:
    image: Image.Image
    seed: int
    similarity: Similarity | None
    record: dict[str, Any]
    path: Path | None = None


@dataclass
class GenerationResult:
    images: list[GeneratedImage] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cancelled: bool = False

    @property
    def seed(self) -> int | None:
        return self.images[0].seed if self.images else None


@dataclass
class _Prepared:
    """What every image of one request shares: models, embeddings, pipeline and fixed inputs."""

    studio: StudioModel
    pipe: Any
    references: ReferenceFaces
    prompt_embeds: torch.Tensor
    negative_embeds: torch.Tensor | None
    models: dict[str, dict[str, str] | None]
    pipeline_inputs: dict[str, Any]
    extra_record: dict[str, Any]
    steps_run: int


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
        if request.uses_pose:
            sources.append(manager.source("controlnet", request.models.controlnet))
        return manager.needed_downloads(sources)

    # ------------------------------------------------------------------------------------------------ entry points

    def generate(self, request: GenerateRequest, *, out_dir: Path | None = None, on_step: StepCallback | None = None,
                 should_stop: StopCheck | None = None, on_download: DownloadCallback | None = None
                 ) -> GenerationResult:
        """Text-to-image with the identity of the reference photos; saves PNGs into `out_dir` when given."""
        request.check()
        return self._run(request, out_dir, on_step, should_stop, on_download)

    def inpaint(self, request: InpaintRequest, *, out_dir: Path | None = None, on_step: StepCallback | None = None,
                should_stop: StopCheck | None = None, on_download: DownloadCallback | None = None
                ) -> GenerationResult:
        """Paint the reference identity into one face of a template photo; the result has the template's size."""
        request.check()
        return self._run(request, out_dir, on_step, should_stop, on_download)

    def compare_strengths(self, request: GenerateRequest, strengths: Sequence[float], *, out_dir: Path | None = None,
                          on_step: StepCallback | None = None, should_stop: StopCheck | None = None,
                          on_download: DownloadCallback | None = None) -> GenerationResult:
        """The same seed at several face strengths, one image each, in the order given.

        Everything but FACT's `s` is shared (references, face tokens, prompt embeddings, seed), so the images show
        the trade-off between likeness and following the prompt; each carries its identity similarity.
        """
        strengths = [float(s) for s in strengths]
        if not 2 <= len(strengths) <= MAX_COMPARED_STRENGTHS:
            raise InvalidRequestError(f"Compare 2 to {MAX_COMPARED_STRENGTHS} face strengths; got {len(strengths)}.")
        for value in strengths:
            if not math.isfinite(value) or not 0.0 <= value <= 2.0:
                raise InvalidRequestError(f"Each face strength must be a number from 0 to 2; got {value:g}.")
        request.num_images = 1
        request.check()
        return self._run(request, out_dir, on_step, should_stop, on_download, strengths=strengths)

    def regenerate(self, png: str | Path, *, faces: list[str] | None = None, out_dir: Path | None = None,
                   on_step: StepCallback | None = None, should_stop: StopCheck | None = None,
                   on_download: DownloadCallback | None = None) -> GenerationResult:
        """Make the image stored in a FaceStudio PNG again, from its metadata (same seed, models, inputs).

        `faces` replaces the reference photo paths (for photos that moved); their contents must be unchanged.
        """
        record = read_png_record(png)
        data = dict(record["request"])
        request_class = InpaintRequest if data.get("mode") == "inpaint" else GenerateRequest
        request = request_class.from_dict(data)
        request.seed = int(record["seed"])
        request.num_images = 1
        expected = [entry["sha256"] for entry in record.get("references", [])]
        if faces:
            if expected and len(faces) != len(expected):
                raise InvalidRequestError(f"{Path(png).name} was made from {len(expected)} reference photo(s); "
                                          f"got {len(faces)} with --face.")
            request.faces = [str(f) for f in faces]
        self._check_unchanged(request.faces, expected, Path(png).name)
        for key, attr in (("template", "image"), ("mask_file", "mask"), ("pose_image", "pose")):
            if record.get(key):
                self._check_unchanged([getattr(request, attr)], [record[key]["sha256"]], Path(png).name)
        placement = self.manager.placement
        if record.get("device") and (record["device"] != placement.device.type or
                                     record.get("dtype") != placement.dtype_name):
            logger.warning("%s was made on %s/%s; on %s/%s the result will be close but not bit-identical.",
                           Path(png).name, record["device"], record.get("dtype"), placement.device.type,
                           placement.dtype_name)
        return self._run(request, out_dir, on_step, should_stop, on_download, expected_models=record.get("models"))

    def _check_unchanged(self, paths: list[str], digests: list[str], png_name: str) -> None:
        for path, digest in zip(paths, digests, strict=False):
            if not Path(path).is_file():
                raise InvalidRequestError(f"{path} (used to make {png_name}) is missing; pass the same file with "
                                          "--face (or put it back) to regenerate.")
            if self.manager.hashes.file(Path(path)) != digest:
                raise InvalidRequestError(f"{path} differs from the file {png_name} was made from (SHA-256 "
                                          "mismatch); the same image cannot be regenerated from it.")

    # ------------------------------------------------------------------------------------------------ the run

    def _run(self, request: GenerateRequest, out_dir: Path | None, on_step: StepCallback | None,
             should_stop: StopCheck | None, on_download: DownloadCallback | None,
             expected_models: dict | None = None, strengths: Sequence[float] | None = None) -> GenerationResult:
        manager = self.manager
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED - MAX_IMAGES_GUARD)
        if seed + request.num_images - 1 > MAX_SEED:
            raise InvalidRequestError(f"`seed` {seed} + {request.num_images} images passes the largest seed {MAX_SEED}.")
        result = GenerationResult()

        # 1. Inputs that can fail fast (bad photos, no face) before any big model is loaded.
        analyzer = manager.analyzer()
        references = prepare_references(analyzer, request.faces, manager.hashes, manager.settings.max_pixels)
        result.warnings.extend(references.warnings)
        template = template_face = alpha = box = None
        if isinstance(request, InpaintRequest):
            template, template_face, alpha, box = self._inpaint_inputs(request)

        # 2. Models (download if needed, load once), configured and used under one hold of the GPU lock, so a
        # concurrent request cannot swap the base model or the LoRA between configuration and use.
        with manager.gpu_lock:
            studio = manager.studio_model(request.models.base_model, request.models.adapter, on_download)
            encoder, encoder_file = manager.face_encoder(request.models.face_encoder, on_download)
            controlnet = controlnet_file = None
            if request.uses_pose:
                controlnet, controlnet_file = manager.controlnet(request.models.controlnet, on_download)
            lora_file = manager.apply_lora(studio, request.lora, request.lora_scale)
            models = {"base_model": studio.base.to_dict(), "fact_adapter": studio.adapter_file.to_dict(),
                      "face_encoder": encoder_file.to_dict(),
                      "controlnet": controlnet_file.to_dict() if controlnet_file else None,
                      "lora": lora_file.to_dict() if lora_file else None}
            result.warnings.extend(_model_differences(expected_models, models))
            request.models.base_model = studio.base.spec
            request.models.adapter = studio.adapter_file.spec
            request.models.face_encoder = encoder_file.spec
            if controlnet_file is not None:
                request.models.controlnet = controlnet_file.spec
            kind = ("inpaint" if template is not None else "txt2img") + ("+pose" if controlnet is not None else "")
            with out_of_memory_guard(manager.placement, self._doing(request)):
                pipe = manager.pipeline(studio, kind, controlnet)
                prepared = self._prepare(request, studio, pipe, encoder, references, models, template,
                                         template_face, alpha, box)
                if strengths is None:  # image i: seed + i
                    variants = [(seed + i, request) for i in range(request.num_images)]
                else:  # one seed, one image per strength
                    variants = [(seed, dataclasses.replace(request, face_strength=s)) for s in strengths]
                self._render(variants, prepared, result, out_dir, on_step, should_stop,
                             (template, template_face, alpha, box))
        if result.cancelled:
            logger.info("Stopped after %d image(s).", len(result.images))
        return result

    def _render(self, variants: list[tuple[int, GenerateRequest]], prepared: _Prepared, result: GenerationResult,
                out_dir: Path | None, on_step: StepCallback | None, should_stop: StopCheck | None,
                inpainting: tuple) -> None:
        """Denoise, paste back (inpainting), score and save each (seed, request) in turn; stops between or within
        images."""
        template, template_face, alpha, box = inpainting
        analyzer = self.manager.analyzer()
        references = prepared.references
        for index, (image_seed, request) in enumerate(variants):
            if should_stop is not None and should_stop():
                result.cancelled = True
                break
            image, stopped = self._denoise(request, prepared, image_seed, index, len(variants), on_step,
                                           should_stop)
            if stopped:
                result.cancelled = True
                break
            if template is not None:
                image = paste_back(template, image, alpha, box)
            similarity = result_similarity(analyzer, image, references, near=template_face)
            record = self._record(request, prepared, image_seed, index, image, similarity)
            generated = GeneratedImage(image, image_seed, similarity, record)
            if out_dir is not None:
                generated.path = save_png(image, _output_path(out_dir, request.mode, image_seed), record)
            result.images.append(generated)

    @staticmethod
    def _doing(request: GenerateRequest) -> str:
        what = "inpainting" if isinstance(request, InpaintRequest) else "generating"
        return f"{what} {request.num_images} image(s) at {request.width}x{request.height}"

    def _inpaint_inputs(self, request: InpaintRequest):
        """Template, the face being replaced, the blend mask (template size) and the crop box around it."""
        analyzer = self.manager.analyzer()
        name = Path(request.image).name
        template = load_image(request.image, name=name, max_pixels=self.manager.settings.max_pixels)
        analysis = analyzer.analyze(template)
        face = None
        if request.mask_region is not None:
            face = analyzer.select_face(analysis, request.face_index, name)
            parsing = analyzer.parse(template, face)
            alpha = parsing.inpaint_mask(request.mask_region, request.mask_dilate_px, request.mask_feather_px)
        else:
            alpha = _load_mask(request.mask, template.size, self.manager.settings.max_pixels)
            height, width = alpha.shape
            covered = [f for f in analysis.faces
                       if alpha[min(max(int(f.center[1]), 0), height - 1), min(max(int(f.center[0]), 0), width - 1)] > 0]
            if covered:  # the face under the mask, for the similarity shown with the result
                face = covered[0]
        box = crop_around_mask(alpha, request.width / request.height)
        return template, face, alpha, box

    def _prepare(self, request, studio: StudioModel, pipe, encoder, references: ReferenceFaces, models, template,
                 template_face, alpha, box: CropBox | None) -> _Prepared:
        adapter = studio.adapter
        device = pipe._execution_device
        do_cfg = request.cfg > 1.0
        # Face tokens: TransFace (float32) -> resampler -> [1, 16 N, 768].
        crops = torch.from_numpy(np.stack([to_unit_range(c) for c in references.crops])).float()
        encoder_device = next(encoder.parameters()).device
        with torch.no_grad():
            face_tokens = encoder(crops.to(encoder_device))
            face_embeds = adapter.encode_faces(face_tokens)
            no_face_embeds = adapter.no_face_tokens(len(references.crops)) if request.face_cfg else face_embeds
            prompt_embeds, negative_embeds = pipe.encode_prompt(request.prompt, device, 1, do_cfg,
                                                                request.negative_prompt)
        prompt_embeds = torch.cat([prompt_embeds, face_embeds.to(prompt_embeds)], dim=1)
        if negative_embeds is not None:
            negative_embeds = torch.cat([negative_embeds, no_face_embeds.to(negative_embeds)], dim=1)

        inputs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        width, height = request.width, request.height
        steps_run = request.steps
        if template is not None:
            width, height = working_size(box, request.width, request.height)
            crop = template.crop(box.as_tuple()).resize((width, height), Image.Resampling.LANCZOS)
            crop_mask = Image.fromarray(((alpha[box.top : box.bottom, box.left : box.right] > 0) * 255)
                                        .astype(np.uint8)).resize((width, height), Image.Resampling.NEAREST)
            inputs.update(image=crop, mask_image=crop_mask, strength=request.denoise)
            steps_run = max(1, min(int(request.steps * request.denoise), request.steps))
            extra["template"] = {"path": str(Path(request.image).resolve()),
                                 "sha256": self.manager.hashes.file(Path(request.image))}
            if request.mask_region is None:
                extra["mask_file"] = {"path": str(Path(request.mask).resolve()),
                                      "sha256": self.manager.hashes.file(Path(request.mask))}
            extra["crop_box"] = list(box.as_tuple())
            extra["working_size"] = [width, height]
            if template_face is not None:
                extra["template_face_bbox"] = [round(float(v), 1) for v in template_face.bbox]
        if request.uses_pose:
            pose_image = self._pose_image(request, width, height)
            inputs["control_image" if template is not None else "image"] = pose_image
            inputs["controlnet_conditioning_scale"] = request.pose_strength
            extra["pose_image"] = {"path": str(Path(request.pose).resolve()),
                                   "sha256": self.manager.hashes.file(Path(request.pose))}
        inputs.update(width=width, height=height)
        return _Prepared(studio, pipe, references, prompt_embeds, negative_embeds, models, inputs, extra, steps_run)

    def _pose_image(self, request, width: int, height: int) -> Image.Image:
        from facestudio.face.pose import pose_condition

        name = Path(request.pose).name
        source = load_image(request.pose, name=name, max_pixels=self.manager.settings.max_pixels)
        return pose_condition(source, width, height, name=name, mode=request.pose_mode,
                              estimator=self.manager.pose_estimator())

    def _denoise(self, request, prepared: _Prepared, seed: int, index: int, total: int, on_step: StepCallback | None,
                 should_stop: StopCheck | None) -> tuple[Image.Image, bool]:
        """One pipeline call for one image; returns (image, stopped)."""
        pipe = prepared.pipe
        adapter = prepared.studio.adapter
        pipe.scheduler = make_scheduler(request.scheduler, prepared.studio.scheduler_config)
        delay = request.face_delay_steps
        if isinstance(request, InpaintRequest):  # inpainting runs only the last `denoise` share of the steps
            delay = min(delay, prepared.steps_run)
        adapter.set_scale(0.0 if delay > 0 else request.face_strength)
        stopped = False

        def step_end(pipeline, step: int, timestep, callback_kwargs):
            nonlocal stopped
            if step + 1 == delay:
                adapter.set_scale(request.face_strength)  # "delayed face condition": face on from here
            if on_step is not None:
                on_step(StepProgress(index, total, step + 1, prepared.steps_run))
            if should_stop is not None and should_stop():
                stopped = True
                pipeline._interrupt = True  # diffusers skips the remaining steps
            return callback_kwargs

        generator = torch.Generator("cpu").manual_seed(seed)
        try:
            output = pipe(
                prompt_embeds=prepared.prompt_embeds,
                negative_prompt_embeds=prepared.negative_embeds,
                num_inference_steps=request.steps,
                guidance_scale=request.cfg,
                generator=generator,
                output_type="pil",
                callback_on_step_end=step_end,
                **prepared.pipeline_inputs,
            )
        finally:
            adapter.set_scale(request.face_strength)
        return output.images[0], stopped

    def _record(self, request, prepared: _Prepared, seed: int, index: int, image: Image.Image,
                similarity: Similarity | None) -> dict[str, Any]:
        import diffusers

        placement = self.manager.placement
        data = request.to_dict()
        data["seed"] = seed
        data["num_images"] = 1
        return {
            "facestudio_version": __version__,
            "diffusers_version": diffusers.__version__,
            "torch_version": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "request": data,
            "seed": seed,
            "image_index": index,
            "width": image.width,
            "height": image.height,
            "scheduler_title": SCHEDULERS[request.scheduler].title,
            "models": prepared.models,
            "references": prepared.references.to_records(),
            "device": placement.device.type,
            "dtype": placement.dtype_name,
            "similarity": similarity.to_dict() if similarity else None,
            **prepared.extra_record,
        }


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


