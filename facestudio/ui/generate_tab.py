"""Generate tab: new portraits of a person in a chosen style, with every setting of the engine, "compare
strengths" (one seed at several face strengths, each with its identity score) and "reuse these settings"."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import gradio as gr

from facestudio.engine.metadata import GenerationRecord
from facestudio.engine.presets import StylePreset
from facestudio.engine.requests import (
    MAX_IMAGES,
    MAX_SEED,
    RECIPES,
    GenerateRequest,
    ModelChoice,
    field_bounds,
    field_default,
    recipe_defaults,
)
from facestudio.engine.schedulers import SCHEDULERS
from facestudio.errors import InvalidRequestError
from facestudio.ui.common import GPU, PageProgress, gpu_work, number, similarity_caption, user_errors
from facestudio.ui.context import StudioContext, clip
from facestudio.ui.identity_tab import identity_choices, reference_photos
from facestudio.ui.workspace import Workspace

SIZES = ["512x512", "512x768", "768x512", "576x768", "768x576", "640x640", "768x768", "512x640", "640x512",
         "256x256"]
DEFAULT_STRENGTHS = "0.2, 0.4, 0.6, 0.8"


class StopFlags:
    """One "stop" flag per browser session, so one person's Stop never ends another person's generation."""

    def __init__(self):
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def reset(self, session: str) -> threading.Event:
        with self._lock:
            flag = self._flags[session] = threading.Event()
            return flag

    def stop(self, session: str) -> None:
        with self._lock:
            if session in self._flags:
                self._flags[session].set()


def session_of(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "api"


def should_stop(flag: threading.Event, request: gr.Request | None):
    """The engine's stop check for one event: the session's Stop button, or its client gone. Gradio marks the
    running event of a session whose page closed (or whose API client disconnected) as no longer alive; the engine
    then stops after its current step instead of keeping the GPU busy for nobody."""
    from gradio.context import LocalContext

    blocks = LocalContext.blocks.get(None)
    session = getattr(request, "session_hash", None)

    def gone() -> bool:
        queue = getattr(blocks, "_queue", None)
        if queue is None or session is None:
            return False
        events = [event for jobs in list(queue.active_jobs) if jobs for event in list(jobs)
                  if event.session_hash == session]
        return bool(events) and not any(event.alive for event in events)

    return lambda: flag.is_set() or gone()


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in str(text).lower().replace("×", "x").split("x"))
    except ValueError:
        raise InvalidRequestError(f"The size must look like 512x768; got {clip(repr(text), 40)}.") from None
    return width, height


def checked(request_class, name: str, value: Any) -> Any:
    """A page or API value for a request field, through `common.number` with the field's own bounds (whole numbers
    where the bounds are whole)."""
    low, high = field_bounds(request_class, name)
    return number(value, name, low, high, whole=isinstance(low, int) and isinstance(high, int))


def size_choices(extra: str | None = None) -> list[str]:
    return SIZES if extra is None or extra in SIZES else [*SIZES, extra]


def parse_strengths(text: str) -> list[float]:
    values = []
    for part in str(text).replace(";", ",").split(","):
        if part.strip():
            try:
                values.append(float(part))
            except ValueError:
                raise InvalidRequestError(f"Strengths are numbers separated by commas; got {part.strip()!r}.") from None
    return values


@dataclass
class GenerateTab:
    identity: gr.Dropdown
    adapter: gr.Dropdown


#: The controls a style preset fills, in the order `apply_preset` returns them.
PRESET_CONTROLS = ("prompt", "negative_prompt", "steps", "cfg", "size", "face_strength", "lora", "lora_scale",
                   "description")


def preset_control_values(preset: StylePreset, subject: str | None) -> dict[str, Any]:
    """What the Generate tab's controls show for a preset: a request changed by `StylePreset.apply` (the one way a
    preset changes a request), read back control by control."""
    styled = preset.apply(GenerateRequest(faces=(), prompt=""), subject)
    return {"prompt": styled.prompt, "negative_prompt": styled.negative_prompt, "steps": styled.steps,
            "cfg": styled.cfg, "size": f"{styled.width}x{styled.height}", "face_strength": styled.face_strength,
            "lora": styled.lora or "", "lora_scale": styled.lora_scale,
            "description": f"**{preset.name}**" + (f" — {preset.description}" if preset.description else "")}


def default(name: str) -> Any:
    """A control's initial value: the request field's default (one source of truth for the CLI and the page)."""
    return field_default(GenerateRequest, name)


def build_generate_tab(ctx: StudioContext, stops: StopFlags) -> GenerateTab:
    scheduler_titles = [choice.title for choice in SCHEDULERS.values()]
    default_size = f"{default('width')}x{default('height')}"

    def request_from(identity, photos, prompt, negative, strength, delay, face_cfg, steps, cfg, scheduler, seed,
                     randomize, size, num_images, base_model, adapter, lora, lora_scale, pose, pose_strength,
                     ws: Workspace | None = None) -> GenerateRequest:
        width, height = parse_size(size)
        return GenerateRequest(
            faces=reference_photos(ctx, identity, photos, ws), prompt=prompt or "", negative_prompt=negative or "",
            seed=None if randomize or seed is None or seed == "" else checked(GenerateRequest, "seed", seed),
            steps=checked(GenerateRequest, "steps", steps), cfg=checked(GenerateRequest, "cfg", cfg),
            width=width, height=height, num_images=checked(GenerateRequest, "num_images", num_images),
            face_strength=checked(GenerateRequest, "face_strength", strength),
            face_delay_steps=checked(GenerateRequest, "face_delay_steps", delay), face_cfg=bool(face_cfg),
            scheduler=scheduler or default("scheduler"),
            lora=ctx.checked_choice(lora, ctx.lora_choices, "LoRA"),
            lora_scale=checked(GenerateRequest, "lora_scale", lora_scale),
            pose=None if not pose else str(ctx.uploaded_image(pose, "pose image")),
            pose_strength=checked(GenerateRequest, "pose_strength", pose_strength),
            models=ModelChoice(base_model=ctx.checked_choice(base_model, ctx.base_model_choices, "base model"),
                               adapter=ctx.checked_choice(adapter, lambda: ctx.adapter_choices(ws), "adapter"),
                               face_encoder=ctx.options.face_encoder),
        )

    def finish(result, captions: list[str], ws: Workspace):
        gallery = [(ctx.handout(image.path), caption) for image, caption in zip(result.images, captions, strict=True)]
        for image, caption in zip(result.images, captions, strict=True):  # the viewer's results (workspace.py)
            ctx.results.add(ws, image.path, caption, image.record)
        records = [image.record for image in result.images]
        notes = list(result.warnings)
        if result.cancelled:
            notes.append(f"Stopped; {len(result.images)} image(s) finished.")
        seed = result.seed
        info = f"Seed used: **{seed}**" if seed is not None else "No image was made."
        info += "".join(f"\n- ⚠️ {note}" for note in notes)
        return gallery, gr.update(value=seed) if seed is not None else gr.update(), info, records

    @user_errors
    @gpu_work(180)
    def generate(identity, photos, prompt, negative_prompt, face_strength, face_delay_steps, face_cfg, steps, cfg,
                 scheduler, seed, random_seed, size, num_images, base_model, adapter, lora, lora_scale, pose,
                 pose_strength, progress=gr.Progress(), request: gr.Request = None):  # noqa: B008 (gradio's pattern)
        ws = ctx.workspace(request)
        gen_request = request_from(identity, photos, prompt, negative_prompt, face_strength, face_delay_steps,
                                   face_cfg, steps, cfg, scheduler, seed, random_seed, size, num_images, base_model,
                                   adapter, lora, lora_scale, pose, pose_strength, ws)
        flag = stops.reset(session_of(request))
        reporter = PageProgress(progress)
        progress(0.0, desc="Loading models (first use can take a while)…")
        result = ctx.engine.generate(gen_request, out_dir=ws.outputs_dir(), on_step=reporter.step,
                                     should_stop=should_stop(flag, request), on_download=reporter.download)
        return finish(result, [similarity_caption(image) for image in result.images], ws)

    @user_errors
    @gpu_work(240)
    def compare(strengths, identity, photos, prompt, negative_prompt, face_strength, face_delay_steps, face_cfg, steps,
                cfg, scheduler, seed, random_seed, size, num_images, base_model, adapter, lora, lora_scale, pose,
                pose_strength, progress=gr.Progress(), request: gr.Request = None):  # noqa: B008
        ws = ctx.workspace(request)
        gen_request = request_from(identity, photos, prompt, negative_prompt, face_strength, face_delay_steps,
                                   face_cfg, steps, cfg, scheduler, seed, random_seed, size, num_images, base_model,
                                   adapter, lora, lora_scale, pose, pose_strength, ws)
        flag = stops.reset(session_of(request))
        reporter = PageProgress(progress, "Comparing strengths")
        progress(0.0, desc="Loading models (first use can take a while)…")
        result = ctx.engine.compare_strengths(gen_request, parse_strengths(strengths), out_dir=ws.outputs_dir(),
                                              on_step=reporter.step, should_stop=should_stop(flag, request),
                                              on_download=reporter.download)
        captions = [f"strength {image.record.request.face_strength:g} · {similarity_caption(image)}"
                    for image in result.images]
        return finish(result, captions, ws)

    def stop(request: gr.Request = None):
        stops.stop(session_of(request))
        return "Stopping after the current step…"

    pictured = [preset for preset in ctx.presets if preset.thumbnail is not None]

    def choose_preset(evt: gr.SelectData):
        return pictured[evt.index].key

    @user_errors
    def apply_preset(key: str | None, subject: str):
        preset = ctx.preset(key)
        if preset is None:
            return [gr.update()] * len(PRESET_CONTROLS)
        values = preset_control_values(preset, subject)
        size = values["size"]
        return [gr.update(choices=size_choices(size), value=size) if name == "size" else values[name]
                for name in PRESET_CONTROLS]

    def select_result(evt: gr.SelectData):
        return evt.index

    @user_errors
    def reuse(records: list[GenerationRecord] | None, index: int | None, request: gr.Request = None):
        if not records:
            raise InvalidRequestError("Make an image first, then pick it in the gallery to reuse its settings.")
        record = records[index if index is not None and 0 <= index < len(records) else 0]
        return settings_from_record(record, ctx.workspace(request))

    @user_errors
    def reuse_png(file, request: gr.Request = None):
        path = ctx.uploaded_file(file, "PNG")
        if path is None:
            return [gr.update()] * len(reusable)
        return settings_from_record(GenerationRecord.from_png(path), ctx.workspace(request))

    def settings_from_record(record: GenerationRecord, ws: Workspace) -> list:
        request = record.request
        size = f"{request.width}x{request.height}"
        choice = {"base": {v for _, v in ctx.base_model_choices()},
                  "adapter": {v for _, v in ctx.adapter_choices(ws)}}
        base, adapter = ctx.shown_path(request.models.base_model), ctx.shown_path(request.models.adapter)
        scheduler = SCHEDULERS.get(request.scheduler, SCHEDULERS[default("scheduler")]).title
        return [
            request.prompt, request.negative_prompt, request.face_strength, request.face_delay_steps,
            request.face_cfg, request.steps, request.cfg, scheduler, record.seed, False,
            gr.update(choices=size_choices(size), value=size),
            base if base and base in choice["base"] else gr.update(),
            adapter if adapter and adapter in choice["adapter"] else gr.update(),
            request.lora_scale,
        ]

    # -- layout --------------------------------------------------------------------------------------------------
    with gr.Row():
        with gr.Column(scale=2):
            with gr.Row():
                identity = gr.Dropdown(label="Saved identity", choices=identity_choices(ctx), value=None,
                                       allow_custom_value=True, elem_id="generate-identity")
                photos = gr.File(label="…or photos of the person (1–8)", file_count="multiple", file_types=["image"],
                                 elem_id="generate-photos", height=120)
            gr.Markdown("**Style** — pick a preset; it fills the prompt and settings below (all editable).")
            presets = gr.Gallery(value=[(str(p.thumbnail), p.name) for p in pictured], label="Style presets", columns=7, height=230, allow_preview=False,
                                 elem_id="generate-presets", show_label=False)
            with gr.Row():
                preset_key = gr.Dropdown(label="Style", choices=[(p.name, p.key) for p in ctx.presets], value=None,
                                         elem_id="generate-style", scale=1)
                subject = gr.Textbox(label="Subject", value="a person", scale=2,
                                     info="What `{prompt}` becomes in the style's prompt.")
            preset_info = gr.Markdown()
            prompt = gr.Textbox(label="Prompt", lines=3, value="a portrait photo of a person, natural light",
                                elem_id="generate-prompt")
            negative = gr.Textbox(label="Negative prompt", lines=2, value=default("negative_prompt"))
            with gr.Row():
                strength = gr.Slider(0.0, 1.5, value=default("face_strength"), step=0.05, label="Face strength",
                                     info="0 = the base model alone; higher = more likeness, less prompt",
                                     elem_id="generate-strength")
                num_images = gr.Slider(1, MAX_IMAGES, value=default("num_images"), step=1, label="Images")
                size = gr.Dropdown(label="Size (width x height)", choices=SIZES, value=default_size,
                                   allow_custom_value=True, elem_id="generate-size",
                                   info="or type one, e.g. 512x704 (multiples of 8, 256-1024)")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=MAX_SEED)
                randomize = gr.Checkbox(label="Random seed", value=True)
            with gr.Accordion("Sampling, face conditioning, models, pose", open=False):
                with gr.Row():
                    steps = gr.Slider(1, 100, value=default("steps"), step=1, label="Steps", elem_id="generate-steps")
                    cfg = gr.Slider(1.0, 15.0, value=default("cfg"), step=0.5, label="CFG")
                    scheduler = gr.Dropdown(label="Scheduler", choices=scheduler_titles,
                                            value=SCHEDULERS[default("scheduler")].title)
                with gr.Row():
                    recipe = gr.Radio(label="Recipe's sampling", choices=list(RECIPES), value=default("recipe"),
                                      info="release: the FACT release's PNDM, 50 steps, CFG 7, 512x512, s = 0.5; "
                                           "single: the studio's defaults")
                with gr.Row():
                    delay = gr.Slider(0, 50, value=default("face_delay_steps"), step=1,
                                      label="Delayed face condition (steps without the face)")
                    face_cfg = gr.Checkbox(label="Face CFG ('no face' in the negative branch)", value=default("face_cfg"))
                with gr.Row():
                    base_model = gr.Dropdown(label="Base model", choices=ctx.base_model_choices(),
                                             value=ctx.base_model_choices()[0][1])
                    adapter = gr.Dropdown(label="FACT adapter (trained ones appear here)",
                                          choices=ctx.adapter_choices(), value=ctx.shown_path(ctx.options.adapter),
                                          allow_custom_value=True)
                with gr.Row():
                    lora = gr.Dropdown(label="Style LoRA (files in FACESTUDIO_HOME/loras appear here)",
                                       choices=ctx.lora_choices(), value="", allow_custom_value=True)
                    lora_scale = gr.Slider(-1.0, 2.0, value=default("lora_scale"), step=0.05, label="LoRA scale")
                with gr.Row():
                    pose = gr.Image(label="Pose from this photo (optional, OpenPose ControlNet)", type="filepath",
                                    sources=["upload"], height=200)
                    pose_strength = gr.Slider(0.0, 2.0, value=default("pose_strength"), step=0.05, label="Pose strength")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id="generate-button")
                stop_button = gr.Button("Stop", variant="stop", scale=0)
            with gr.Row():
                strengths = gr.Textbox(label="Strengths to compare", value=DEFAULT_STRENGTHS, scale=2)
                compare_button = gr.Button("Compare strengths", elem_id="generate-compare", scale=1)
        with gr.Column(scale=2):
            gallery = gr.Gallery(label="Results", columns=2, height=560, format="png", elem_id="generate-gallery",
                                 object_fit="contain",
                                 buttons=["download", "fullscreen"])
            info = gr.Markdown(elem_id="generate-info")
            with gr.Row():
                reuse_button = gr.Button("Reuse these settings", elem_id="generate-reuse")
                png = gr.File(label="…or from a FaceStudio PNG", file_types=[".png"], height=100)
    records = gr.State([])
    selected = gr.State(None)

    settings = [identity, photos, prompt, negative, strength, delay, face_cfg, steps, cfg, scheduler, seed, randomize,
                size, num_images, base_model, adapter, lora, lora_scale, pose, pose_strength]
    reusable = [prompt, negative, strength, delay, face_cfg, steps, cfg, scheduler, seed, randomize, size,
                base_model, adapter, lora_scale]
    outputs = [gallery, seed, info, records]

    # preprocess=False: files, numbers and choices reach the handlers as sent and go through the studio's own checks
    # (`ctx.uploaded_file` + `load_image`, `checked`), so bad input is one sentence, never gradio's preprocess dump.
    go.click(generate, settings, outputs, api_name="generate", concurrency_id=GPU, preprocess=False)
    compare_button.click(compare, [strengths, *settings], outputs, api_name="compare_strengths", concurrency_id=GPU,
                         preprocess=False)
    stop_button.click(stop, None, info, api_name="generate_stop", queue=False)
    presets.select(choose_preset, None, preset_key, api_visibility="private")
    controls = {"prompt": prompt, "negative_prompt": negative, "steps": steps, "cfg": cfg, "size": size,
                "face_strength": strength, "lora": lora, "lora_scale": lora_scale, "description": preset_info}
    preset_key.change(apply_preset, [preset_key, subject], [controls[name] for name in PRESET_CONTROLS],
                      api_visibility="private")
    def recipe_sampling(chosen):
        values = recipe_defaults(GenerateRequest, chosen if chosen in RECIPES else "single")
        return (values["steps"], values["cfg"], SCHEDULERS[values["scheduler"]].title,
                f"{values['width']}x{values['height']}", values["face_strength"], values["face_cfg"],
                values["face_delay_steps"])

    recipe.change(recipe_sampling, recipe, [steps, cfg, scheduler, size, strength, face_cfg, delay],
                  api_visibility="private")
    gallery.select(select_result, None, selected, api_visibility="private")
    reuse_button.click(reuse, [records, selected], reusable, api_visibility="private")
    png.upload(reuse_png, png, reusable, api_name="reuse_png", preprocess=False)
    def adapter_list(request: gr.Request = None):
        return gr.update(choices=ctx.adapter_choices(ctx.workspace(request)))

    adapter.focus(adapter_list, None, adapter, api_visibility="private")
    lora.focus(lambda: gr.update(choices=ctx.lora_choices()), None, lora, api_visibility="private")
    return GenerateTab(identity=identity, adapter=adapter)
