"""The command line's engine commands: `generate`, `inpaint`, `download`, `models`.

A thin front: it turns flags into a `GenerateRequest`/`InpaintRequest`, calls the same `Engine` functions the UI
calls, draws progress with tqdm on stderr, and prints one line per result. Errors reach `cli.main`, which prints
one sentence and exits non-zero.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from facestudio.cli.options import add_device_options
from facestudio.errors import FaceStudioError, InvalidRequestError

logger = logging.getLogger("facestudio")


def add_generation_commands(commands, add_backend_options: Callable[[argparse.ArgumentParser], None]) -> None:
    from facestudio.engine.registry import ModelRegistry
    from facestudio.engine.requests import (
        MASK_REGIONS,
        POSE_MODES,
        GenerateRequest,
        InpaintRequest,
        field_bounds,
        field_default,
    )
    from facestudio.engine.schedulers import SCHEDULERS

    registry = ModelRegistry.default()

    scheduler_names = ", ".join(f'"{c.title}"' for c in SCHEDULERS.values())

    def sampling(parser: argparse.ArgumentParser, request_class: type[GenerateRequest], prompt_required: bool) -> None:
        def default(name: str):
            return field_default(request_class, name)

        face_strength = default("face_strength")
        side_low, side_high = field_bounds(request_class, "width")
        parser.add_argument("--face", action="append", default=[], metavar="IMG",
                            help="reference photo of the person; repeat for up to 8 photos of the same person")
        parser.add_argument("--prompt", required=False, default=None, metavar="P",
                            help="what to draw" + (" (required)" if prompt_required else ""))
        parser.add_argument("--negative-prompt", default=default("negative_prompt"), metavar="N",
                            help="what to avoid (default: a short list of common defects)")
        parser.add_argument("--seed", type=int, default=None, metavar="N",
                            help="seed of the first image (image i uses N+i); random when omitted, always printed")
        parser.add_argument("--steps", type=int, default=default("steps"), metavar="N",
                            help=f"denoising steps (default {default('steps')})")
        parser.add_argument("--cfg", type=float, default=default("cfg"), metavar="X",
                            help=f"classifier-free guidance (default {default('cfg'):g})")
        parser.add_argument("--width", type=int, default=default("width"), metavar="W",
                            help=f"width, a multiple of 8 from {side_low} to {side_high} (default {default('width')})")
        parser.add_argument("--height", type=int, default=default("height"), metavar="H",
                            help=f"height, a multiple of 8 from {side_low} to {side_high} (default {default('height')})")
        parser.add_argument("--num-images", type=int, default=default("num_images"), metavar="K",
                            help=f"how many images (default {default('num_images')})")
        parser.add_argument("--face-strength", type=float, default=face_strength, metavar="S",
                            help=f"FACT adapter strength s, 0 = base model only (default {face_strength})")
        parser.add_argument("--face-delay-steps", type=int, default=default("face_delay_steps"), metavar="K",
                            help="run the first K steps without the face (FACT's delayed face condition; default "
                                 f"{default('face_delay_steps')})")
        parser.add_argument("--no-face-cfg", action="store_true",
                            help="give the negative guidance branch the face too, instead of the 'no face' embedding")
        parser.add_argument("--scheduler", default=default("scheduler"), metavar="NAME",
                            help=f"sampler: {scheduler_names} (default {SCHEDULERS[default('scheduler')].title}; the "
                                 "FACT release used PNDM with 50 steps)")
        parser.add_argument("--lora", default=None, metavar="F", help="style LoRA .safetensors file")
        parser.add_argument("--lora-scale", type=float, default=default("lora_scale"), metavar="X",
                            help=f"LoRA multiplier (default {default('lora_scale'):g})")
        parser.add_argument("--pose", default=None, metavar="IMG",
                            help="pose from this photo (or OpenPose skeleton image) through the OpenPose ControlNet")
        parser.add_argument("--pose-mode", choices=POSE_MODES, default=default("pose_mode"),
                            help="how to read --pose: auto (skeleton or photo, detected), photo, skeleton")
        parser.add_argument("--pose-strength", type=float, default=default("pose_strength"), metavar="X",
                            help=f"ControlNet conditioning scale (default {default('pose_strength'):g})")
        models_and_device(parser)
        parser.add_argument("--subject", default=None, metavar="TEXT",
                            help="words for the person put before the prompt, as the release does "
                                 "(e.g. \"a woman, 25-year-old\")")
        parser.add_argument("--recipe", default=default("recipe"), metavar="release|single",
                            help="release: the FACT release's pipeline (FACT.md §6); single: the studio's one-pass "
                                 f"pipeline (default {default('recipe')})")
        parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                            help="folder for the PNGs (created if needed; files are never overwritten)")

    def models_and_device(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--base-model", default=None, metavar="ID|PATH",
                            help="SD1.5 base: a registry name (see `models`), a diffusers folder, a single .safetensors/"
                                 ".ckpt file, or a hub id (owner/name, hf:owner/name, modelscope:owner/name)")
        parser.add_argument("--adapter", default=None, metavar="ID|PATH",
                            help="FACT adapter (default: the one trained for the base model)")
        parser.add_argument("--face-encoder", default=None, metavar="ID|PATH",
                            help=f"TransFace face encoder (default {registry.default_for('face_encoder')})")
        parser.add_argument("--pose-controlnet", "--controlnet", dest="controlnet", default=None, metavar="ID|PATH",
                            help="OpenPose ControlNet for --pose and the release recipe (default "
                                 f"{registry.default_for('controlnet')}; --controlnet is the same flag)")
        parser.add_argument("--canny-controlnet", default=None, metavar="ID|PATH",
                            help="Canny ControlNet of the release inpainting recipe (default "
                                 f"{registry.default_for('canny_controlnet')}, downloaded when first needed)")
        add_device_options(parser)
        add_backend_options(parser)

    generate = commands.add_parser(
        "generate", help="new portraits of the person in the reference photos",
        description="Text-to-image with the identity of the reference photos (FACT over Stable Diffusion 1.5). "
                    "Each PNG stores its parameters; --from-png makes the same image again.")
    sampling(generate, GenerateRequest, prompt_required=True)
    generate.add_argument("--from-png", default=None, metavar="PNG",
                          help="regenerate the image stored in this FaceStudio PNG (other sampling flags are ignored; "
                               "files the studio keeps are found in FACESTUDIO_HOME; --face replaces reference photos "
                               "kept elsewhere, --base-model/--adapter/--face-encoder/--controlnet models kept "
                               "elsewhere)")
    add_identity_tool_flags(generate, GenerateRequest)
    generate.set_defaults(handler=run_generate)

    inpaint = commands.add_parser(
        "inpaint", help="put the person into a face of a template photo",
        description="Repaint one face of a template photo with the identity of the reference photos. Only a crop "
                    "around the mask is processed; pixels outside the mask stay unchanged.")
    sampling(inpaint, InpaintRequest, prompt_required=False)
    inpaint.add_argument("--image", required=True, metavar="TEMPLATE", help="the template photo")
    inpaint.add_argument("--mask", default=field_default(InpaintRequest, "mask"), metavar="|".join(MASK_REGIONS) + "|MASK.png",
                         help="auto/face: the face region; head: face and hair; or a mask image (white = repaint)")
    inpaint.add_argument("--face-index", type=int, default=field_default(InpaintRequest, "face_index"), metavar="I",
                         help="which face of the template (0 = largest, default)")
    inpaint.add_argument("--denoise", type=float, default=field_default(InpaintRequest, "denoise"), metavar="X",
                         help="how strongly the masked area is redrawn, 0-1 (default "
                              f"{field_default(InpaintRequest, 'denoise'):g}, as the release)")
    inpaint.add_argument("--mask-dilate", type=int, default=None, metavar="PX",
                         help="grow the automatic mask by PX pixels (default: 8%% of the face size)")
    inpaint.add_argument("--mask-feather", type=int, default=None, metavar="PX",
                         help="soften the automatic mask's edge over PX pixels (default: 6%% of the face size)")
    inpaint.add_argument("--assign", action="append", default=[], metavar="I=REF[,REF...]|I=identity:NAME",
                         help="several people: face I of the template gets this person (photos, or a saved "
                              "identity); repeat per face; faces not listed stay unchanged (recipe default: single)")
    inpaint.set_defaults(handler=run_inpaint, recipe=_DefaultRecipe(field_default(InpaintRequest, "recipe")))

    fix = commands.add_parser(
        "fix-faces", help="repaint faces of an existing image with the identity of the reference photos",
        description="The face fix on any image: each chosen face (default: every face found) is inpainted again on "
                    "a crop with FACT and the reference photos; each result line gives every face's identity score "
                    "before and after.")
    sampling(fix, InpaintRequest, prompt_required=False)
    fix.add_argument("--image", required=True, metavar="IMG", help="the image whose faces to fix")
    fix.add_argument("--face-index", type=int, action="append", default=[], metavar="I",
                     help="a face to fix (0 = largest); repeat for several; default: every face found")
    fix.add_argument("--denoise", type=float, default=field_default(GenerateRequest, "face_fix_denoise"),
                     metavar="X", help="how strongly each face is redrawn, 0-1 (default "
                                       f"{field_default(GenerateRequest, 'face_fix_denoise'):g})")
    fix.set_defaults(handler=run_fix_faces, recipe="single")

    compare = commands.add_parser(
        "compare", help="one seed at several face strengths: identity score, CLIP score, a recommended strength",
        description="Render one seed at each face strength and score every image for likeness (identity score) "
                    "and prompt-following (CLIP score, model clip-vit-l14, downloaded when first needed). Writes "
                    "the images, a grid, a plot of identity against CLIP score and a JSON with the numbers.")
    sampling(compare, GenerateRequest, prompt_required=True)
    compare.add_argument("--strengths", required=True, metavar="S,S,...",
                         help="2 to 8 face strengths from 0 to 2, e.g. 0,0.25,0.5,0.75,1")
    compare.add_argument("--clip-model", default=None, metavar="ID|PATH",
                         help=f"CLIP model of the prompt-following score (default {registry.default_for('clip')})")
    compare.set_defaults(handler=run_compare)

    download = commands.add_parser(
        "download", help="fetch models into the cache (sizes shown first)",
        description="Download models by registry name into FACESTUDIO_HOME/models. Without names: the default base "
                    "model, its FACT adapter and the face encoder. Interrupted downloads resume.")
    download.add_argument("names", nargs="*", metavar="NAME", help="registry names or hub ids (see `models`)")
    download.add_argument("--all", action="store_true", help="every model in the registry")
    download.add_argument("--yes", "-y", action="store_true", help="do not ask before downloading")
    download.set_defaults(handler=run_download)

    models = commands.add_parser("models", help="the known models, whether they are cached, and their sizes",
                                 description="List the model registry with download sizes and cache state.")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(handler=run_models)


class _DefaultRecipe(str):
    """`inpaint`'s recipe when `--recipe` is not given (equal to the field's default), so that `--assign` can
    default to `single` while one face keeps the field's default."""


def add_identity_tool_flags(parser: argparse.ArgumentParser, request_class) -> None:
    """`generate`'s best of N and face fix flags (defaults and bounds from the request's fields)."""
    from facestudio.engine.requests import FACE_FIX_MODES, FACE_FIX_STRENGTH, field_bounds, field_default

    low, high = field_bounds(request_class, "best_of")
    parser.add_argument("--best-of", type=int, default=field_default(request_class, "best_of"), metavar="N",
                        help=f"make N candidates (seeds seed..seed+N-1, {low}-{high}) and keep the most alike by "
                             "identity score (default 1)")
    parser.add_argument("--keep", type=int, default=field_default(request_class, "keep"), metavar="K",
                        help="with --best-of: how many of the best candidates to save (default 1)")
    parser.add_argument("--face-fix", default=field_default(request_class, "face_fix"), metavar="|".join(FACE_FIX_MODES),
                        help="after text-to-image, repaint faces with FACT on a crop: auto (faces under 40%% of the "
                             "shorter side), on (every face), off (default auto)")
    parser.add_argument("--face-fix-denoise", type=float, default=field_default(request_class, "face_fix_denoise"),
                        metavar="X", help="how strongly the face fix redraws each face, 0-1 (default "
                                          f"{field_default(request_class, 'face_fix_denoise'):g}; face strength "
                                          f"{FACE_FIX_STRENGTH:g})")


# ------------------------------------------------------------------------------------------------------ helpers


def _engine(args: argparse.Namespace):
    from facestudio.engine import Engine, EngineSettings, ModelManager, select_device

    _quiet_libraries(args.debug)
    settings = EngineSettings.from_settings(
        args.settings,
        placement=select_device(args.device, args.dtype, args.low_vram),
        attention=args.attention,
        allow_download=not args.no_download,
        face_backend=args.backend,
        min_face_px=args.min_face_px,
    )
    return Engine(ModelManager(settings))


def _quiet_libraries(debug: bool) -> None:
    """diffusers/transformers print loading bars and advice; users of the CLI see ours only."""
    if debug:
        return
    from facestudio.engine.logs import quiet_model_libraries

    quiet_model_libraries()
    logging.getLogger("facestudio").setLevel(logging.INFO)


def _request_fields(args: argparse.Namespace) -> dict:
    from facestudio.engine import ModelChoice

    return {
        "faces": list(args.face), "negative_prompt": args.negative_prompt, "seed": args.seed,
        "steps": args.steps, "cfg": args.cfg, "width": args.width, "height": args.height,
        "num_images": args.num_images, "face_strength": args.face_strength,
        "face_delay_steps": args.face_delay_steps, "face_cfg": not args.no_face_cfg, "scheduler": args.scheduler,
        "lora": args.lora, "lora_scale": args.lora_scale, "pose": args.pose, "pose_mode": args.pose_mode,
        "pose_strength": args.pose_strength,
        "models": ModelChoice(args.base_model, args.adapter, args.face_encoder, args.controlnet,
                              args.canny_controlnet),
        "recipe": args.recipe,
    }


class _Progress:
    """tqdm bars on stderr for downloads (bytes) and denoising (steps)."""

    def __init__(self):
        self._bar = None
        self._key = None

    def download(self, event) -> None:
        from tqdm import tqdm

        if self._key != ("download", event.model):
            self.close()
            self._bar = tqdm(total=event.total_bytes, unit="B", unit_scale=True, desc=f"download {event.model}",
                             file=sys.stderr, leave=False)
            self._key = ("download", event.model)
        self._bar.n = event.done_bytes
        self._bar.refresh()
        if event.finished:
            self.close()

    def step(self, progress) -> None:
        from tqdm import tqdm

        if self._key != ("image", progress.image):
            self.close()
            desc = f"image {progress.image + 1}/{progress.num_images}"
            self._bar = tqdm(total=progress.steps, desc=desc, unit="step", file=sys.stderr, leave=False)
            self._key = ("image", progress.image)
        self._bar.n = progress.step
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self._key = None


def _announce_downloads(engine, request, args, extra=()) -> None:
    from facestudio.engine import format_bytes

    if getattr(args, "no_download", False) or engine.manager.hub.offline:
        return
    plans = engine.needed_downloads(request) + engine.manager.needed_downloads(list(extra))
    if plans:
        total = sum(plan.missing_bytes for plan in plans)
        print(f"Downloading {len(plans)} model(s), {format_bytes(total)} in all, into "
              f"{engine.manager.hub.home / 'models'}:", file=sys.stderr)
        for plan in plans:
            print(f"  {plan.describe()}", file=sys.stderr)


def _report(result, out_dir: Path) -> int:
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for image in result.images:
        if image.similarity is None:
            likeness = "no face found in the result"
        else:
            verdict = "same person" if image.similarity.same_person else "below the same-person threshold"
            likeness = f"similarity {image.similarity.similarity:.3f} ({verdict})"
        print(f"{image.path}  seed {image.seed}  {likeness}{_identity_tools_summary(image.record)}")
    if result.cancelled:
        print(f"stopped: {len(result.images)} image(s) finished.", file=sys.stderr)
        return 130
    return 0


def _score(value) -> str:
    return "no face" if value is None else f"{value:.3f}"


def _identity_tools_summary(record) -> str:
    """Best of N (rank and score of this image among its candidates), and each repainted face's identity score
    before and after (face fix, several people, fix-faces)."""
    parts = []
    if record.candidates:
        entry = next((c for c in record.candidates if c.get("seed") == record.seed), None)
        if entry is not None:
            parts.append(f"rank {entry['rank']} of {len(record.candidates)} (score {_score(entry.get('score'))})")
    faces = [s for s in record.stages if s.get("stage") in ("face-fix", "face")]
    for number, stage in enumerate(faces):
        label = f"face {stage['face_index']}" if "face_index" in stage else f"fixed face {number + 1}"
        parts.append(f"{label} {_score(stage.get('similarity_before'))} -> {_score(stage.get('similarity_after'))}")
    return "".join(f"  {part}" for part in parts)


def _run(method: str, request, args) -> int:
    from facestudio.engine.inputs import check_input_files

    # The user's files first (a missing photo is one sentence at once), then the engine and the hub (sizes, downloads).
    check_input_files(request, args.settings.max_pixels)
    engine = _engine(args)
    progress = _Progress()
    try:
        _announce_downloads(engine, request, args)
        result = getattr(engine, method)(request, out_dir=args.out, on_step=progress.step,
                                         on_download=progress.download)
    finally:
        progress.close()
    return _report(result, args.out)


# ------------------------------------------------------------------------------------------------------ commands


def run_generate(args: argparse.Namespace) -> int:
    from facestudio.engine import GenerateRequest
    from facestudio.engine.identities import with_subject

    if args.from_png:
        engine = _engine(args)
        progress = _Progress()
        try:
            result = engine.regenerate(args.from_png, faces=args.face or None, models=_request_fields(args)["models"],
                                       out_dir=args.out,
                                       on_step=progress.step, on_download=progress.download)
        finally:
            progress.close()
        return _report(result, args.out)
    if not args.face:
        raise InvalidRequestError("Give at least one reference photo with --face (or --from-png PNG).")
    if not args.prompt:
        raise InvalidRequestError("Give a --prompt describing the portrait.")
    fields = _request_fields(args)
    if args.recipe == "release":  # the release's sampling, except where a flag changed the default
        from facestudio.engine.requests import recipe_defaults

        single, release = recipe_defaults(GenerateRequest, "single"), recipe_defaults(GenerateRequest, "release")
        fields.update({name: value for name, value in release.items() if fields[name] == single[name]})
    fields.update(best_of=args.best_of, keep=args.keep, face_fix=args.face_fix,
                  face_fix_denoise=args.face_fix_denoise)
    request = GenerateRequest(prompt=with_subject(args.prompt, args.subject), **fields).checked()
    return _run("generate", request, args)


def run_inpaint(args: argparse.Namespace) -> int:
    from facestudio.engine import InpaintRequest
    from facestudio.engine.identities import with_subject
    from facestudio.engine.requests import MASK_REGIONS, field_default

    assignments = _assignments(args)
    if assignments and isinstance(args.recipe, _DefaultRecipe):  # several people default to the one-pass recipe
        args.recipe = "single"
    args.recipe = str(args.recipe)
    fields = _request_fields(args)
    if args.prompt or args.subject:  # else the request's own default prompt
        fields["prompt"] = with_subject(args.prompt or field_default(InpaintRequest, "prompt"), args.subject)
    if args.mask not in MASK_REGIONS and not Path(args.mask).is_file():
        raise InvalidRequestError(f"--mask {args.mask!r} is not auto, face, head or an existing mask image.")
    if assignments and args.face:
        raise InvalidRequestError("Give each face its person with --assign, or one person with --face, not both.",
                                  field="assignments")
    request = InpaintRequest(image=args.image, mask=args.mask, face_index=args.face_index, denoise=args.denoise,
                             mask_dilate_px=args.mask_dilate, mask_feather_px=args.mask_feather,
                             assignments=assignments, **fields).checked()
    return _run("inpaint", request, args)


def _assignments(args: argparse.Namespace) -> tuple:
    """`--assign I=REF[,REF...]` and `--assign I=identity:NAME` as `FaceAssignment`s (a saved identity's photos)."""
    from facestudio.engine.identities import IdentityStore
    from facestudio.engine.requests import FaceAssignment

    assignments = []
    for text in args.assign:
        index, sep, value = text.partition("=")
        if not sep or not index.strip().isdigit() or not value.strip():
            raise InvalidRequestError(f"--assign {text!r} must look like I=photo.jpg[,photo2.jpg] or "
                                      "I=identity:NAME (I = the face number, 0 = largest).")
        value = value.strip()
        if value.startswith("identity:"):
            identity = IdentityStore(args.settings.home, args.settings.max_pixels).get(value[len("identity:"):])
            assignments.append(FaceAssignment(int(index), tuple(str(p) for p in identity.photos), identity.name))
        else:
            photos = tuple(part.strip() for part in value.split(",") if part.strip())
            assignments.append(FaceAssignment(int(index), photos))
    return tuple(assignments)


def run_fix_faces(args: argparse.Namespace) -> int:
    from facestudio.engine import InpaintRequest
    from facestudio.engine.identities import with_subject
    from facestudio.engine.requests import field_default

    if not args.face:
        raise InvalidRequestError("Give at least one reference photo with --face.")
    fields = _request_fields(args)
    if args.prompt or args.subject:
        fields["prompt"] = with_subject(args.prompt or field_default(InpaintRequest, "prompt"), args.subject)
    for index in args.face_index:
        if not 0 <= index <= 1000:
            raise InvalidRequestError(f"--face-index must be a whole number from 0 to 1000; got {index}.")
    request = InpaintRequest(image=args.image, denoise=args.denoise, **fields)
    # The shared checks, before any model loads (the assignments are made per face found, inside the engine).
    dataclasses.replace(request, face_index=0).checked()
    engine = _engine(args)
    progress = _Progress()
    try:
        _announce_downloads(engine, request, args)
        result = engine.fix_faces(request, list(dict.fromkeys(args.face_index)) or None, out_dir=args.out,
                                  on_step=progress.step,
                                  on_download=progress.download)
    finally:
        progress.close()
    return _report(result, args.out)


def run_compare(args: argparse.Namespace) -> int:
    from facestudio.engine import GenerateRequest
    from facestudio.engine.identities import with_subject
    from facestudio.engine.requests import check_strengths

    strengths = check_strengths(args.strengths)
    if not args.face:
        raise InvalidRequestError("Give at least one reference photo with --face.")
    if not args.prompt:
        raise InvalidRequestError("Give a --prompt: the CLIP score measures how well each image follows it.")
    request = GenerateRequest(prompt=with_subject(args.prompt, args.subject), **_request_fields(args))
    dataclasses.replace(request, num_images=1).checked()
    engine = _engine(args)
    progress = _Progress()
    try:
        _announce_downloads(engine, request, args,
                            extra=[engine.manager.source("clip", args.clip_model)])
        result, comparison = engine.compare_likeness(request, strengths, out_dir=args.out,
                                                     clip_model=args.clip_model, on_step=progress.step,
                                                     on_download=progress.download)
    finally:
        progress.close()
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.cancelled:
        print(f"stopped: {len(result.images)} image(s) finished.", file=sys.stderr)
        return 130
    from facestudio.engine.likeness import comparison_grid, comparison_plot
    from facestudio.files import write_atomic

    stem = result.images[0].path.stem if result.images and result.images[0].path else f"compare-{comparison.seed}"
    grid = args.out / f"{stem}-grid.png"
    comparison_grid([made.image for made in result.images], comparison.points).save(grid)
    plot = args.out / f"{stem}-plot.png"
    comparison_plot(comparison).save(plot)
    numbers = args.out / f"{stem}-compare.json"
    write_atomic(numbers, json.dumps(comparison.to_dict(), indent=2).encode())
    for point, made in zip(comparison.points, result.images, strict=False):
        identity = "no face found" if point.identity is None else (
            f"identity {point.identity:.3f} ({'same person' if point.same_person else 'below the threshold'})")
        print(f"{made.path}  strength {point.strength:g}  {identity}  CLIP {point.clip_score:.2f}")
    if comparison.recommended is None:
        print(f"recommended strength: none ({comparison.reason})")
    else:
        print(f"recommended strength: {comparison.recommended:g} ({comparison.reason})")
    print(f"grid {grid}\nplot {plot}\nnumbers {numbers}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from facestudio.engine import ModelHub, ModelRegistry, format_bytes, resolve_source

    _quiet_libraries(args.debug)
    registry = ModelRegistry.default()
    hub = ModelHub(args.settings.home, offline=args.settings.offline)
    if args.all:
        records = list(registry.records.values())
    elif args.names:
        records = []
        for name in args.names:
            if name in registry.records:
                records.append(registry.get(name))
            else:
                records.append(resolve_source(name, "base_model", registry).record)
    else:
        base = registry.get(registry.default_for("base_model"))
        records = [base, registry.get(base.adapter), registry.get(registry.default_for("face_encoder"))]
    missing = [record for record in records if hub.cached_path(record) is None]
    for record in records:
        if record not in missing:
            print(f"{record.key}: already in the cache")
    if not missing:
        return 0
    plans = [hub.plan(record) for record in missing]  # estimates at once when offline or the hub is unreachable
    unreachable = sorted({"ModelScope" if record.hub == "modelscope" else "Hugging Face" for record in missing
                          if not hub.reachable(record.hub)})
    if unreachable:
        for plan in plans:
            print(plan.describe())
        why = ("downloads are off (HF_HUB_OFFLINE or FACESTUDIO_OFFLINE is set)" if hub.offline else
               f"{' and '.join(unreachable)} cannot be reached from this machine")
        print(f"error: {why}, so nothing was downloaded; copy the model files into {hub.home / 'models' / 'local'} "
              "instead (the README's Models section says how).", file=sys.stderr)
        return 1
    total = sum(plan.missing_bytes for plan in plans)
    for plan in plans:
        print(plan.describe())
    print(f"total: {format_bytes(total)} into {hub.home / 'models'}")
    if not args.yes and sys.stdin.isatty():
        answer = input("Download now? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing downloaded.")
            return 1
    progress = _Progress()
    failed = False
    for plan in plans:
        try:
            path = hub.fetch(plan.record, progress.download, plan=plan)
            progress.close()
            print(f"{plan.record.key}: {path}")
        except FaceStudioError as err:
            progress.close()
            if args.debug:
                raise
            print(f"error: {err}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


def run_models(args: argparse.Namespace) -> int:
    from facestudio.engine import ModelHub, ModelRegistry, format_bytes
    from facestudio.engine.inventory import model_states

    registry = ModelRegistry.default()
    hub = ModelHub(args.settings.home, offline=args.settings.offline)
    rows = [row.to_dict() for row in model_states(registry, hub)]
    if args.json:
        print(json.dumps({"home": str(hub.home), "models": rows}, indent=2))
        return 0
    print(f"model cache: {hub.home / 'models'}")
    for row in rows:
        default = " (default)" if row["default"] else ""
        adapter = f", adapter {row['adapter']}" if row["adapter"] else ""
        print(f"  {row['name']:<14} {row['kind']:<15} ~{format_bytes(row['size_bytes']):>9}  {row['state']}{default}"
              f"{adapter}\n      {row['title']}; {row['source']}")
    return 0
