"""Generate tab: new portraits of a person in a chosen style. Inputs left, results right (all a first image needs
fits 1400x900), one progress element beside the button with the time left, the session's history with "reuse
settings" / "reuse seed", "compare strengths" (one seed at several face strengths, each with its identity score and,
with a CLIP model on disk, its CLIP score: a table, a plot and the recommended strength), presets as one gallery
of cards (a result can become a card), and the last error kept beside its button."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from facestudio.engine.likeness import StrengthComparison
from facestudio.engine.metadata import GenerationRecord
from facestudio.engine.presets import StylePreset, save_user_thumbnail, user_thumbnail
from facestudio.engine.requests import (
    FACE_FIX_MODES,
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
from facestudio.ui.common import (
    GPU,
    PageProgress,
    SessionNotes,
    gpu_work,
    number,
    similarity_caption,
    user_errors,
)
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



@dataclass
class GenerateTab:
    identity: gr.Dropdown
    adapter: gr.Dropdown
    #: What the page fills when it opens (the no-GPU note, the preset cards with the user's thumbnails).
    on_load: Callable[[], list]
    load_outputs: list


#: What "quick preview" sets, whatever a preset or recipe says: a first look on a machine without a GPU.
QUICK_SIZE = "256x256"
QUICK_STEPS = 10
#: This session's results kept in the history (the oldest drop out first).
HISTORY_LIMIT = 60


@dataclass
class ResultEntry:
    """One result of this session: the copy the page shows and downloads (the PNG with its settings), the saved
    file (for "use as thumbnail"), its caption and how it was made. Lives in `gr.State`, never sent to a browser."""

    shown: str
    source: str
    caption: str
    record: GenerationRecord


def identity_text(image) -> str:
    """'identity 0.82 (same person)' for a `GeneratedImage` or a `GenerationRecord`."""
    if image.similarity is None:
        return "identity: no face found"
    verdict = "same person" if image.similarity.same_person else "weak likeness"
    return f"identity {image.similarity.similarity:.2f} ({verdict})"


def history_caption(record: GenerationRecord) -> str:
    """'seed 7 · strength 0.5 · identity 0.82 (same person)'."""
    return f"seed {record.seed} · strength {record.request.face_strength:g} · {identity_text(record)}"


def strength_scores(entries: list[ResultEntry]) -> list[dict[str, float]]:
    """The points of the compare plot: face strength against identity score (results without a face left out)."""
    return [{"strength": entry.record.request.face_strength, "identity": entry.record.similarity.similarity}
            for entry in entries if entry.record.similarity is not None]


#: The compare table's columns (the page's table, `/compare_strengths`' fifth output).
COMPARE_COLUMNS = ["strength", "identity", "same person", "CLIP score"]
#: The CLIP column where no CLIP model was used.
NO_CLIP = "not available"


def comparison_table(images, comparison: StrengthComparison | None):
    """One row per strength, as the CLI's `compare` prints it: the identity score ("no face found"), whether it
    passes the same-person threshold, and the CLIP score (from `Engine.compare_likeness`; `NO_CLIP` without one)."""
    import pandas as pd

    if comparison is not None:
        rows = [[p.strength, "no face found" if p.identity is None else round(p.identity, 3),
                 "yes" if p.same_person else "no", round(p.clip_score, 2)] for p in comparison.points]
    else:
        rows = [[image.record.request.face_strength,
                 "no face found" if image.similarity is None else round(image.similarity.similarity, 3),
                 "yes" if image.similarity is not None and image.similarity.same_person else "no", NO_CLIP]
                for image in images]
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def likeness_points(comparison: StrengthComparison):
    """The likeness plot's points: identity against CLIP score, one per strength (images without a face left out),
    each coloured and named by its strength."""
    import pandas as pd

    rows = [{"CLIP score": round(p.clip_score, 2), "identity": p.identity, "strength": f"s={p.strength:g}"}
            for p in comparison.points if p.identity is not None]
    return pd.DataFrame(rows, columns=["CLIP score", "identity", "strength"]).astype(
        {"CLIP score": float, "identity": float})


def recommendation_text(comparison: StrengthComparison) -> str:
    """The recommended strength in one sentence, with the engine's reason."""
    if comparison.recommended is None:
        return f"No recommended strength: {comparison.reason}."
    return f"**Recommended strength: {comparison.recommended:g}** ({comparison.reason})."


def clip_hint(ctx: StudioContext) -> str:
    """'' when the CLIP score can be computed without a download (the studio's `--clip-model`, a local path, or
    the registry's model in the cache); else the one line the page shows instead of the scores. Looks in the cache
    only: no hub is asked."""
    from facestudio.engine.hub import format_bytes

    manager = ctx.manager
    source = manager.source("clip", ctx.options.clip_model)
    if source.record is None or manager.hub.cached_path(source.record) is not None:
        return ""
    record = source.record
    return (f"No CLIP score: the CLIP model {record.key} ({format_bytes(record.size_bytes)}) is not on disk; tick "
            f"**Download the CLIP model**, download {record.key} in the Models tab, or start the studio with "
            "`--clip-model FOLDER`, then compare again.")


def ranking_text(record: GenerationRecord) -> str:
    """Best of N: every candidate's seed and identity score, best first ('' for a single image)."""
    if not record.candidates:
        return ""
    rows = sorted(record.candidates, key=lambda c: c.get("rank") or 0)
    lines = [f"{c.get('rank')}. seed {c.get('seed')} · "
             + ("no face found" if c.get("score") is None else f"identity {float(c['score']):.2f}")
             + (" · kept" if c.get("kept") else "") for c in rows]
    return f"\n\n**Best of {len(rows)}** (ranked by identity score):\n" + "\n".join(f"- {line}" for line in lines)


#: The controls "Reuse settings" (a history pick, `/reuse_png`) fills, in the order it returns them. The identity
#: tools come after the older ones, so `/reuse_png`'s earlier outputs keep their positions.
REUSED_CONTROLS = ("prompt", "negative_prompt", "face_strength", "face_delay_steps", "face_cfg", "steps", "cfg",
                   "scheduler", "seed", "random_seed", "size", "base_model", "adapter", "lora_scale", "lora",
                   "pose_strength", "face_fix", "face_fix_denoise", "best_of", "keep", "num_images")


def reused_values(record: GenerationRecord) -> dict[str, Any]:
    """What each control of `REUSED_CONTROLS` gets from a result's record, as the request made it (model and LoRA
    files as the record names them; the page checks them against its choices). A best-of-N image's own request is
    that one image: its run's N, K and first seed come from `candidates`, so the settings make the whole run
    again (Images is 1, which best of N needs)."""
    request = record.request
    values: dict[str, Any] = {
        "prompt": request.prompt, "negative_prompt": request.negative_prompt,
        "face_strength": request.face_strength, "face_delay_steps": request.face_delay_steps,
        "face_cfg": request.face_cfg, "steps": request.steps, "cfg": request.cfg,
        "scheduler": SCHEDULERS.get(request.scheduler, SCHEDULERS[default("scheduler")]).title,
        "seed": record.seed, "random_seed": False, "size": f"{request.width}x{request.height}",
        "base_model": request.models.base_model, "adapter": request.models.adapter,
        "lora_scale": request.lora_scale, "lora": request.lora or "", "pose_strength": request.pose_strength,
        "face_fix": request.face_fix, "face_fix_denoise": request.face_fix_denoise,
        "best_of": request.best_of, "keep": request.keep, "num_images": None,  # None: left as it is
    }
    seeds = [c.get("seed") for c in record.candidates if isinstance(c.get("seed"), int)]
    if record.candidates and seeds:
        values.update(best_of=len(record.candidates), keep=max(1, sum(bool(c.get("kept")) for c in record.candidates)),
                      seed=min(seeds))
    if values["best_of"] > 1:
        values["num_images"] = 1
    return values


def quick_note(quick: bool, size: str | None, steps: Any) -> str:
    return (f"Quick preview keeps {QUICK_SIZE} and {QUICK_STEPS} steps (the style asks for {size}, {steps} steps)."
            if quick else "")


def build_generate_tab(ctx: StudioContext, stops: StopFlags) -> GenerateTab:
    scheduler_titles = [choice.title for choice in SCHEDULERS.values()]
    default_size = f"{default('width')}x{default('height')}"
    # The last outcome per button and session, kept beside the button: Generate, Compare, the history's buttons.
    notes, compare_notes, history_notes = SessionNotes(), SessionNotes(), SessionNotes()

    def request_from(identity, photos, prompt, negative, strength, delay, face_cfg, steps, cfg, scheduler, seed,
                     randomize, size, num_images, base_model, adapter, lora, lora_scale, pose, pose_strength,
                     ws: Workspace | None = None, face_fix=None, face_fix_denoise=None, best_of=None,
                     keep=None) -> GenerateRequest:
        # The identity tools (issue 16): unset (older API calls, compare) means the field's default.
        def tool(name: str, value: Any) -> Any:
            return default(name) if value is None or value == "" else checked(GenerateRequest, name, value)

        width, height = parse_size(size)
        n, kept, images = tool("best_of", best_of), tool("keep", keep), checked(GenerateRequest, "num_images", num_images)
        # The request's own checks name fields; here they name the controls beside each other in Advanced.
        if kept > n:
            raise InvalidRequestError(f"`keep` ({kept}) must be at most Best of N ({n}).", field="keep")
        if n > 1 and images != 1:
            raise InvalidRequestError(f"`best_of` makes its own {n} candidates: set Images to 1 (it is {images}) and "
                                      "say how many to save with Keep.", field="best_of")
        return GenerateRequest(
            faces=reference_photos(ctx, identity, photos, ws), prompt=prompt or "", negative_prompt=negative or "",
            seed=None if randomize or seed is None or seed == "" else checked(GenerateRequest, "seed", seed),
            steps=checked(GenerateRequest, "steps", steps), cfg=checked(GenerateRequest, "cfg", cfg),
            width=width, height=height, num_images=images,
            face_strength=checked(GenerateRequest, "face_strength", strength),
            face_delay_steps=checked(GenerateRequest, "face_delay_steps", delay), face_cfg=bool(face_cfg),
            scheduler=scheduler or default("scheduler"),
            lora=ctx.checked_choice(lora, ctx.lora_choices, "LoRA"),
            lora_scale=checked(GenerateRequest, "lora_scale", lora_scale),
            pose=None if not pose else str(ctx.uploaded_image(pose, "pose image")),
            pose_strength=checked(GenerateRequest, "pose_strength", pose_strength),
            face_fix=str(face_fix or default("face_fix")),
            face_fix_denoise=tool("face_fix_denoise", face_fix_denoise),
            best_of=n, keep=kept,
            models=ModelChoice(base_model=ctx.checked_choice(base_model, ctx.base_model_choices, "base model"),
                               adapter=ctx.checked_choice(adapter, lambda: ctx.adapter_choices(ws), "adapter"),
                               face_encoder=ctx.options.face_encoder, controlnet=ctx.options.controlnet,
                               canny_controlnet=ctx.options.canny_controlnet),
        )

    def finish(result, captions: list[str], reporter: PageProgress, request, notes: SessionNotes,
               ws: Workspace):
        entries = [ResultEntry(shown=ctx.handout(image.path), source=str(image.path), caption=caption,
                               record=image.record) for image, caption in zip(result.images, captions, strict=True)]
        gallery = [(entry.shown, entry.caption) for entry in entries]
        notes_list = list(result.warnings)
        for image, caption in zip(result.images, captions, strict=True):  # the viewer's results (workspace.py)
            ctx.results.add(ws, image.path, caption, image.record)
        if result.cancelled:
            notes_list.append(f"Stopped; {len(result.images)} image(s) finished.")
        seed = result.seed
        info = f"Seed used: **{seed}**" if seed is not None else "No image was made."
        if entries:
            info += ranking_text(entries[0].record)
        info += "".join(f"\n- ⚠️ {note}" for note in notes_list)
        notes.put(request, f"✓ {len(entries)} image(s) {reporter.summary()}" if entries else
                  f"No image was made ({reporter.summary()}).")
        return gallery, gr.update(value=seed) if seed is not None else gr.update(), info, entries

    @notes.noting_errors
    @user_errors
    @gpu_work(180)
    def generate(identity, photos, prompt, negative_prompt, face_strength, face_delay_steps, face_cfg, steps, cfg,
                 scheduler, seed, random_seed, size, num_images, base_model, adapter, lora, lora_scale, pose,
                 pose_strength, face_fix=None, face_fix_denoise=None, best_of=None, keep=None,
                 progress=gr.Progress(), request: gr.Request = None):  # noqa: B008 (gradio's pattern)
        ws = ctx.workspace(request)
        gen_request = request_from(identity, photos, prompt, negative_prompt, face_strength, face_delay_steps,
                                   face_cfg, steps, cfg, scheduler, seed, random_seed, size, num_images, base_model,
                                   adapter, lora, lora_scale, pose, pose_strength, ws, face_fix=face_fix,
                                   face_fix_denoise=face_fix_denoise, best_of=best_of, keep=keep)
        flag = stops.reset(session_of(request))
        reporter = PageProgress(progress)
        progress(0.0, desc="Loading models (first use can take a while)…")
        result = ctx.engine.generate(gen_request, out_dir=ws.outputs_dir(), on_step=reporter.step,
                                     should_stop=should_stop(flag, request), on_download=reporter.download)
        return finish(result, [similarity_caption(image) for image in result.images], reporter, request, notes, ws)

    @compare_notes.noting_errors
    @user_errors
    @gpu_work(240)
    def compare(strengths, identity, photos, prompt, negative_prompt, face_strength, face_delay_steps, face_cfg, steps,
                cfg, scheduler, seed, random_seed, size, num_images, base_model, adapter, lora, lora_scale, pose,
                pose_strength, new_seed=False, download_clip=False,
                progress=gr.Progress(), request: gr.Request = None):  # noqa: B008
        # One seed at every strength: the one in the Seed field (the last one used, put back after each run),
        # whatever "Random seed" says; a new one only when asked for (or when the field is empty).
        ws = ctx.workspace(request)
        gen_request = request_from(identity, photos, prompt, negative_prompt, face_strength, face_delay_steps,
                                   face_cfg, steps, cfg, scheduler, seed, bool(new_seed), size, num_images,
                                   base_model, adapter, lora, lora_scale, pose, pose_strength, ws)
        values = parse_strengths(strengths)
        flag = stops.reset(session_of(request))
        reporter = PageProgress(progress, "Comparing strengths")
        progress(0.0, desc="Loading models (first use can take a while)…")
        # The CLI's `compare`: `Engine.compare_likeness` when the CLIP model is on disk (or the user asks for its
        # download); without it, the identity scores alone and a line saying how to get the CLIP score.
        hint = clip_hint(ctx)
        run = dict(out_dir=ws.outputs_dir(), on_step=reporter.step, should_stop=should_stop(flag, request),
                   on_download=reporter.download)
        comparison: StrengthComparison | None = None
        if hint and download_clip is not True:
            result = ctx.engine.compare_strengths(gen_request, values, **run)
        else:
            result, comparison = ctx.engine.compare_likeness(gen_request, values, clip_model=ctx.options.clip_model,
                                                             **run)
        clips = [point.clip_score for point in comparison.points] if comparison else []  # in the images' order
        captions = [f"strength {image.record.request.face_strength:g} · seed {image.seed} · {identity_text(image)}"
                    + (f" · CLIP {clips[i]:.1f}" if i < len(clips) else "")
                    for i, image in enumerate(result.images)]
        gallery, seed_update, info, entries = finish(result, captions, reporter, request, compare_notes, ws)
        table = comparison_table(result.images, comparison)
        if comparison is not None:
            info += "\n\n" + recommendation_text(comparison)
            lines = gr.update(visible=False)
            scatter = gr.update(value=likeness_points(comparison), visible=True)
        else:
            info += "\n\n" + hint
            lines = compare_plot(entries)
            scatter = gr.update(visible=False)
        return gallery, seed_update, info, entries, table, lines, scatter

    def stop(request: gr.Request = None):
        stops.stop(session_of(request))
        return "Stopping after the current step…"

    def outcome(request: gr.Request = None):
        return notes.get(request)

    def compare_outcome(request: gr.Request = None):
        return compare_notes.get(request)

    def history_outcome(request: gr.Request = None):
        return history_notes.get(request)

    # -- presets: one gallery of cards (the user's own thumbnail wins over the drawn card) -------------------------

    def preset_cards() -> tuple[list[tuple[str, str]], list[str]]:
        cards, problems = [], []
        for preset in ctx.presets:
            own = user_thumbnail(ctx.home, preset.key, problems)
            if own is not None:
                cards.append((ctx.handout(own), preset.name))
            elif preset.thumbnail is not None:
                cards.append((str(preset.thumbnail), preset.name))
            else:
                cards.append((ctx.handout(plain_card(ctx.scratch_dir(), preset.key, preset.name)), preset.name))
        return cards, problems

    def preset_at(index: Any) -> StylePreset | None:
        return ctx.presets[index] if isinstance(index, int) and 0 <= index < len(ctx.presets) else None

    def choose_preset(evt: gr.SelectData):
        return evt.index

    @user_errors
    def apply_preset(index: int | None, subject: str, quick: bool, size_now: str):
        preset = preset_at(index)
        if preset is None:
            return [gr.update()] * len(PRESET_CONTROLS)
        values = preset_control_values(preset, subject)
        size = values["size"]
        if quick:
            values["description"] += "  \n" + quick_note(True, size, values["steps"])
        elif size != size_now:
            values["description"] += f"  \nThe size changes to **{size}** (this style's recommendation)."
        keep = {"size", "steps"} if quick else set()
        return [gr.update() if name in keep else
                gr.update(choices=size_choices(size), value=size) if name == "size" else values[name]
                for name in PRESET_CONTROLS]

    def set_quick(quick: bool, index: int | None):
        """Quick preview on: 256 px, 10 steps. Off: the chosen style's size and steps (or the defaults)."""
        if quick:
            return gr.update(choices=size_choices(QUICK_SIZE), value=QUICK_SIZE), QUICK_STEPS
        preset = preset_at(index)
        size, steps = (f"{preset.width}x{preset.height}", preset.steps) if preset else (default_size, default("steps"))
        return gr.update(choices=size_choices(size), value=size), steps

    @history_notes.noting_errors
    @user_errors
    def use_as_thumbnail(picked: ResultEntry | None, history: list[ResultEntry], index: int | None):
        entry = picked or (history[0] if history else None)
        preset = preset_at(index)
        if entry is None:
            raise InvalidRequestError("Make an image first, then pick it to use it as a style's thumbnail.")
        if preset is None:
            raise InvalidRequestError("Pick a style first: the chosen result becomes that style's thumbnail.")
        save_user_thumbnail(ctx.home, preset.key, Path(entry.source), ctx.settings.max_pixels)
        cards, _ = preset_cards()
        return gr.update(value=cards), f"The thumbnail of **{preset.name}** is now this result."

    # -- history and reuse ------------------------------------------------------------------------------------------

    def add_history(history: list[ResultEntry] | None, fresh: list[ResultEntry] | None):
        history = (list(fresh or []) + list(history or []))[:HISTORY_LIMIT]  # a run's images in their order
        shown = [(entry.shown, history_caption(entry.record)) for entry in history]
        return history, gr.update(value=shown, label=f"This session's results ({len(history)}, newest first)"), None

    def compare_plot(fresh: list[ResultEntry] | None):
        import pandas as pd

        points = strength_scores(fresh or [])
        return gr.update(value=pd.DataFrame(points, columns=["strength", "identity"]), visible=True)

    def hide_plot():
        return gr.update(visible=False), gr.update(visible=False)

    def pick(entries: list[ResultEntry] | None, evt: gr.SelectData):
        entries = entries or []
        return entries[evt.index] if isinstance(evt.index, int) and 0 <= evt.index < len(entries) else None

    def picked_record(picked: ResultEntry | None, history: list[ResultEntry] | None) -> GenerationRecord:
        entry = picked or (history[0] if history else None)
        if entry is None:
            raise InvalidRequestError("Make an image first, then pick it in the results or the history to reuse it.")
        return entry.record

    @history_notes.noting_errors
    @user_errors
    def reuse(picked: ResultEntry | None, history: list[ResultEntry] | None, request: gr.Request = None):
        return settings_from_record(picked_record(picked, history), ctx.workspace(request))

    @history_notes.noting_errors
    @user_errors
    def reuse_seed(picked: ResultEntry | None, history: list[ResultEntry] | None):
        record = picked_record(picked, history)
        return record.seed, False, f"Seed **{record.seed}** is set (Random seed off) for the next run."

    @user_errors
    def reuse_png(file, request: gr.Request = None):
        path = ctx.uploaded_file(file, "PNG")
        if path is None:
            return [gr.update()] * len(reusable)
        return settings_from_record(GenerationRecord.from_png(path), ctx.workspace(request))

    def settings_from_record(record: GenerationRecord, ws: Workspace) -> list:
        values = reused_values(record)
        size = values["size"]
        values["size"] = gr.update(choices=size_choices(size), value=size)
        # Files only when the page offers them (else the control keeps its value): models and the LoRA.
        for name, choices in (("base_model", ctx.base_model_choices), ("adapter", lambda: ctx.adapter_choices(ws)),
                              ("lora", ctx.lora_choices)):
            shown = ctx.shown_path(values[name])
            offered = shown in {v for _, v in choices()}
            values[name] = shown if offered and (shown or name == "lora") else gr.update()
        if values["num_images"] is None:
            values["num_images"] = gr.update()
        return [values[name] for name in REUSED_CONTROLS]

    # -- the machine: say once that there is no GPU, and offer the quick preview ----------------------------------

    def on_load():
        cards, problems = preset_cards()
        warning = "".join(f"⚠️ {problem}  \n" for problem in problems)
        cpu = runs_without_gpu(ctx.options.device, ctx.options.dtype, ctx.options.low_vram)
        return (gr.update(value=cards), warning or gr.update(), gr.update(visible=cpu))

    # -- layout: inputs left, results right; everything needed for a first image fits 1400x900 --------------------
    cards, card_problems = preset_cards()
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=560, elem_id="generate-inputs"):
            with gr.Row(equal_height=True):
                identity = gr.Dropdown(label="Saved identity", choices=identity_choices(ctx), value=None,
                                       allow_custom_value=True, elem_id="generate-identity", scale=2, min_width=160)
                photos = gr.File(label="…or photos of the person (1–8)", file_count="multiple", file_types=["image"],
                                 elem_id="generate-photos", height=80, scale=3, min_width=200)
            presets = gr.Gallery(value=cards, label="Style: click one (it fills the prompt and settings, all editable)",
                                 columns=7, height=214, allow_preview=False, object_fit="cover",
                                 elem_id="generate-presets", elem_classes=["fs-cards"], buttons=[])
            preset_info = gr.Markdown("".join(f"⚠️ {problem}  \n" for problem in card_problems),
                                      elem_id="generate-preset-info")
            prompt = gr.Textbox(label="Prompt", lines=2, value="a portrait photo of a person, natural light",
                                elem_id="generate-prompt")
            with gr.Row():
                strength = gr.Slider(0.0, 1.5, value=default("face_strength"), step=0.05, label="Face strength",
                                     info="higher = more likeness, less prompt", elem_id="generate-strength",
                                     scale=3)
                size = gr.Dropdown(label="Size (width x height)", choices=SIZES, value=default_size,
                                   allow_custom_value=True, elem_id="generate-size", scale=2, min_width=120,
                                   info="or type one: 512x704")
                num_images = gr.Slider(1, MAX_IMAGES, value=default("num_images"), step=1, label="Images", scale=2,
                                       min_width=120)
            with gr.Row(equal_height=True, elem_id="generate-actions"):
                go = gr.Button("Generate", variant="primary", elem_id="generate-button", scale=2, min_width=110)
                stop_button = gr.Button("Stop", variant="stop", scale=0, min_width=60)
                with gr.Column(scale=5, min_width=220):
                    status = gr.Markdown(elem_id="generate-status", min_height=44, elem_classes=["fs-status"],
                                         container=True)
            quick = gr.Checkbox(label=f"Quick preview ({QUICK_SIZE}, {QUICK_STEPS} steps; styles keep it)",
                                value=False, visible=False, elem_id="generate-quick",
                                info="No GPU here: a 512 px image takes minutes on the CPU.")
            with gr.Accordion("Compare strengths (one seed at several face strengths)", open=False,
                              elem_id="generate-compare-fold"):
                with gr.Row():
                    strengths = gr.Textbox(label="Strengths to compare", value=DEFAULT_STRENGTHS, scale=3)
                    new_seed = gr.Checkbox(label="New seed (else the last one)", value=False, scale=2,
                                           min_width=100)
                    download_clip = gr.Checkbox(label="Download the CLIP model (clip-vit-l14, 1.7 GB) if missing",
                                                value=False, scale=2, min_width=120, elem_id="generate-clip-download",
                                                info="for the prompt-following score; never downloaded unasked")
                with gr.Row(equal_height=True):
                    compare_button = gr.Button("Compare strengths", elem_id="generate-compare", scale=1,
                                               min_width=120)
                    with gr.Column(scale=3, min_width=220):
                        compare_status = gr.Markdown(elem_id="generate-compare-status", min_height=44,
                                                     elem_classes=["fs-status"], container=True)
                compare_table = gr.Dataframe(headers=COMPARE_COLUMNS, label="Per strength (the last comparison)",
                                             interactive=False, elem_id="generate-compare-table")
            with gr.Accordion("Advanced: negative prompt, seed, sampling, face conditioning, models, pose",
                              open=False, elem_id="generate-more"):
                subject = gr.Textbox(label="Subject", value="a person",
                                     info="What `{prompt}` becomes in the style's prompt.")
                negative = gr.Textbox(label="Negative prompt", lines=2, value=default("negative_prompt"))
                with gr.Row():
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=MAX_SEED,
                                     elem_id="generate-seed")
                    randomize = gr.Checkbox(label="Random seed", value=True, elem_id="generate-random-seed")
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
                fix_low, fix_high = field_bounds(GenerateRequest, "face_fix_denoise")
                best_low, best_high = field_bounds(GenerateRequest, "best_of")
                with gr.Row():
                    face_fix = gr.Radio(label="Face fix", choices=list(FACE_FIX_MODES), value=default("face_fix"),
                                        elem_id="generate-face-fix",
                                        info="re-inpaint faces with FACT after the image: auto = small faces "
                                             "(under 40% of the shorter side), on = every face")
                    face_fix_denoise = gr.Slider(fix_low, fix_high, value=default("face_fix_denoise"), step=0.05,
                                                 label="Face fix denoise", elem_id="generate-face-fix-denoise")
                with gr.Row():
                    best_of = gr.Number(label="Best of N", value=default("best_of"), precision=0, minimum=best_low,
                                        maximum=best_high, elem_id="generate-best-of",
                                        info="N candidates (seeds seed..seed+N-1) ranked by identity score; "
                                             "Images stays 1")
                    keep = gr.Number(label="Keep", value=default("keep"), precision=0, minimum=best_low,
                                     maximum=best_high, elem_id="generate-keep", info="how many of the best to save")
        with gr.Column(scale=1, min_width=520, elem_id="generate-outputs"):
            gallery = gr.Gallery(label="Results", columns=2, height=440, format="png", elem_id="generate-gallery",
                                 fit_columns=False,
                                 object_fit="contain", elem_classes=["fs-labelled"],
                                 buttons=["download", "fullscreen"])
            info = gr.Markdown(elem_id="generate-info")
            plot = gr.LinePlot(x="strength", y="identity", title="Identity score against face strength",
                               x_title="face strength", y_title="identity (cosine)", height=220, visible=False,
                               elem_id="generate-plot")
            # Compare strengths with the CLIP score: the CLI's plot (identity against CLIP score, one point per
            # strength) and its numbers.
            likeness_plot = gr.ScatterPlot(x="CLIP score", y="identity", color="strength",
                                           title="Likeness against prompt-following, one point per strength",
                                           x_title="CLIP score (prompt-following)", y_title="identity (likeness)",
                                           height=240, visible=False, elem_id="generate-likeness-plot")
            history_gallery = gr.Gallery(label="This session's results (newest first)", columns=5, height=200,
                                         preview=False, fit_columns=False,
                                         format="png", object_fit="contain", elem_id="generate-history",
                                         elem_classes=["fs-labelled"], buttons=["download", "fullscreen"])
            with gr.Row():
                reuse_button = gr.Button("Reuse settings", elem_id="generate-reuse", size="sm")
                reuse_seed_button = gr.Button("Reuse seed ♻", elem_id="generate-reuse-seed", size="sm")
                thumbnail_button = gr.Button("Use as the style's thumbnail", elem_id="generate-thumbnail", size="sm")
            history_note = gr.Markdown(elem_id="generate-history-note")
            png = gr.File(label="…or reuse the settings of a FaceStudio PNG", file_types=[".png"], height=90)
    records = gr.State([])  # the last run's `ResultEntry`s
    history = gr.State([])  # this session's, newest first
    picked = gr.State(None)  # the result picked in either gallery (None: the newest)
    preset_index = gr.State(None)

    settings = [identity, photos, prompt, negative, strength, delay, face_cfg, steps, cfg, scheduler, seed, randomize,
                size, num_images, base_model, adapter, lora, lora_scale, pose, pose_strength]
    reusable = [prompt, negative, strength, delay, face_cfg, steps, cfg, scheduler, seed, randomize, size,
                base_model, adapter, lora_scale, lora, pose_strength, face_fix, face_fix_denoise, best_of, keep,
                num_images]  # in the order of REUSED_CONTROLS
    outputs = [gallery, seed, info, records]

    # preprocess=False: files, numbers and choices reach the handlers as sent and go through the studio's own checks
    # (`ctx.uploaded_file` + `load_image`, `checked`), so bad input is one sentence, never gradio's preprocess dump.
    # The progress is drawn on the status beside the buttons only, not over the seed and every output.
    # The identity tools come after the older inputs, so positional API calls keep their meaning.
    ran = go.click(generate, [*settings, face_fix, face_fix_denoise, best_of, keep], outputs, api_name="generate", concurrency_id=GPU, preprocess=False,
                   show_progress_on=[status])
    compared = compare_button.click(compare, [strengths, *settings, new_seed, download_clip],
                                    [*outputs, compare_table, plot, likeness_plot], api_name="compare_strengths",
                                    concurrency_id=GPU, preprocess=False, show_progress_on=[compare_status])
    # `.then` does not follow a failed event here: the outcome (the error included) is shown on both paths.
    for event, said, where in ((ran, outcome, status), (compared, compare_outcome, compare_status)):
        event.success(said, None, where, api_visibility="private", queue=False, show_progress="hidden")
        event.failure(said, None, where, api_visibility="private", queue=False, show_progress="hidden")
    for event in (ran, compared):
        event.success(add_history, [history, records], [history, history_gallery, picked], api_visibility="private",
                      queue=False, show_progress="hidden")
    ran.success(hide_plot, None, [plot, likeness_plot], api_visibility="private", queue=False,
                show_progress="hidden")
    stop_button.click(stop, None, info, api_name="generate_stop", queue=False)

    controls = {"prompt": prompt, "negative_prompt": negative, "steps": steps, "cfg": cfg, "size": size,
                "face_strength": strength, "lora": lora, "lora_scale": lora_scale, "description": preset_info}
    presets.select(choose_preset, None, preset_index, api_visibility="private", queue=False).then(
        apply_preset, [preset_index, subject, quick, size], [controls[name] for name in PRESET_CONTROLS],
        api_visibility="private", queue=False)
    quick.change(set_quick, [quick, preset_index], [size, steps], api_visibility="private", queue=False)

    def recipe_sampling(chosen, quick_on):
        values = recipe_defaults(GenerateRequest, chosen if chosen in RECIPES else "single")
        size_value = QUICK_SIZE if quick_on else f"{values['width']}x{values['height']}"
        return (QUICK_STEPS if quick_on else values["steps"], values["cfg"], SCHEDULERS[values["scheduler"]].title,
                gr.update(choices=size_choices(size_value), value=size_value), values["face_strength"],
                values["face_cfg"], values["face_delay_steps"])

    recipe.change(recipe_sampling, [recipe, quick], [steps, cfg, scheduler, size, strength, face_cfg, delay],
                  api_visibility="private")
    gallery.select(pick, records, picked, api_visibility="private", queue=False)
    history_gallery.select(pick, history, picked, api_visibility="private", queue=False)
    reused = reuse_button.click(reuse, [picked, history], reusable, api_visibility="private")
    reused.success(lambda: "The form has the picked result's settings.", None, history_note,
                   api_visibility="private", queue=False)
    reused.failure(history_outcome, None, history_note, api_visibility="private", queue=False)
    reuse_seed_button.click(reuse_seed, [picked, history], [seed, randomize, history_note],
                            api_visibility="private").failure(history_outcome, None, history_note,
                                                              api_visibility="private", queue=False)
    thumbnail_button.click(use_as_thumbnail, [picked, history, preset_index], [presets, history_note],
                           api_visibility="private").failure(history_outcome, None, history_note,
                                                             api_visibility="private", queue=False)
    png.upload(reuse_png, png, reusable, api_name="reuse_png", preprocess=False)
    def adapter_list(request: gr.Request = None):
        return gr.update(choices=ctx.adapter_choices(ctx.workspace(request)))

    adapter.focus(adapter_list, None, adapter, api_visibility="private")
    lora.focus(lambda: gr.update(choices=ctx.lora_choices()), None, lora, api_visibility="private")
    return GenerateTab(identity=identity, adapter=adapter, on_load=on_load,
                       load_outputs=[presets, preset_info, quick])


@functools.lru_cache(maxsize=4)
def runs_without_gpu(device: str, dtype: str, low_vram: bool) -> bool:
    """Whether the studio computes on the CPU (asked once; imports torch, so only when the page first opens)."""
    from facestudio.engine.devices import select_device

    try:
        return select_device(device, dtype, low_vram).device.type == "cpu"
    except Exception:  # a bad --device is reported by the first generation, in its words
        return False


def plain_card(folder: Path, key: str, name: str) -> Path:
    """A plain card with the style's name, for a preset that brings no thumbnail (every style stays clickable)."""
    from PIL import Image, ImageDraw

    path = folder / "cards" / f"{key}.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        card = Image.new("RGB", (160, 160), (232, 234, 246))
        draw = ImageDraw.Draw(card)
        words, lines = name.split(), [""]
        for word in words:
            lines[-1:] = [f"{lines[-1]} {word}".strip()] if len(lines[-1]) + len(word) < 14 else [lines[-1], word]
        for row, line in enumerate(lines[:5]):
            draw.text((12, 50 + 16 * row), line, fill=(40, 44, 80))
        card.save(path, format="PNG")
    return path
