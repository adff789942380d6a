"""Models tab: what the studio uses now (the models it was started with, what is loaded, a training job's own
models), each model's state (not downloaded / downloaded / loaded / local file) and size, downloads with progress
(one model, or the defaults at once), unload; the device, GPU and RAM use, and versions. Without a network, the
tab says how to add models from the browser's side: files dropped into FACESTUDIO_HOME/models/local/ appear in the
lists after Refresh."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from facestudio.engine.hub import ModelHub, format_bytes
from facestudio.engine.inventory import (
    DOWNLOADED,
    LOADED,
    ModelState,
    local_models,
    model_states,
    size_of,
    system_report,
)
from facestudio.errors import InvalidRequestError, ModelNotAvailableError
from facestudio.jobs import RunState
from facestudio.ui.common import GPU, PageProgress, user_errors
from facestudio.ui.context import StudioContext, clip

MODEL_COLUMNS = ["name", "kind", "state", "size", "source"]
UNLOAD_CHOICES = [("everything", "all"), ("base model + adapter", "base_model"), ("face encoder", "face_encoder"),
                  ("pose ControlNet", "controlnet"), ("face analyzer", "face_analyzer")]
#: The one sentence shown when a hub cannot be reached: what to do from here, never the command that just failed.
OFFLINE_GUIDANCE = ("put the model files into FACESTUDIO_HOME/models/local/ (a diffusers folder or a "
                    ".safetensors/.ckpt file; see below), then press Refresh: they appear in the model lists")
LOCAL_HELP = """**No internet on the studio's machine?** Copy model files or folders into
`FACESTUDIO_HOME/models/local/` (by any means: a USB stick, `scp`, a shared folder) and press **Refresh**: they
appear in this table and in the base model and adapter lists of Generate, Inpaint and Train.
A folder with `model_index.json` or `unet/` is a base model (diffusers layout); a file of 1.5 GB or more, or a
`.safetensors` holding a UNet, is a single-file base model; a file named like `*TransFace*` is the face encoder;
other `.safetensors`/`.ckpt` files are FACT adapters. A sub-folder named `base_model/`, `fact_adapter/`,
`face_encoder/` or `controlnet/` says the kind of what it holds. The release's files are listed in the table
above (source), for example `ms1mv2_model_TransFace_S.pt` of ModelScope `yucheng1996/FaceChain-FACT`."""


def default_records(ctx: StudioContext) -> list:
    """The models a first generation needs: the default base model, its adapter and the face encoder."""
    registry = ctx.registry
    base = registry.get(registry.default_for("base_model"))
    return [base, registry.get(base.adapter), registry.get(registry.default_for("face_encoder"))]


def build_models_tab(ctx: StudioContext) -> list:
    registry = ctx.registry
    hub = ModelHub(ctx.home, offline=ctx.settings.offline)

    def loaded() -> list[str]:
        return ctx.manager.loaded() if ctx.engine_started else []

    def rows() -> list[ModelState]:
        in_memory = loaded()
        states = model_states(registry, hub, in_memory, local_models(ctx.home))
        known = {row.path for row in states if row.path} | {row.name for row in states}
        for kind, spec in (("base_model", ctx.options.base_model), ("fact_adapter", ctx.options.adapter),
                           ("face_encoder", ctx.options.face_encoder)):
            if spec and spec not in known and spec not in registry.records:  # given by path when the studio started
                state = LOADED if f"{kind}:{spec}" in in_memory else "given at start"
                path = Path(spec)
                states.append(ModelState(path.name, kind, spec, "started with", size_of(path), state, spec, None,
                                         False))
        return states

    def table() -> pd.DataFrame:
        shown = []
        for row in rows():
            source = ctx.shown_path(row.source) if row.source.startswith("/") else row.source
            shown.append([row.name, row.kind, row.state, f"~{format_bytes(row.size_bytes)}", source])
        return pd.DataFrame(shown, columns=MODEL_COLUMNS)

    def in_use() -> list[str]:
        """What generation uses now, and what a running training job uses in its own process."""
        lines = []
        started = [f"{label} `{ctx.shown_path(spec) if Path(spec).is_absolute() else spec}`"
                   for label, spec in (("base model", ctx.options.base_model), ("adapter", ctx.options.adapter),
                                       ("face encoder", ctx.options.face_encoder)) if spec]
        if started:
            lines.append("**Started with:** " + ", ".join(started))
        in_memory = [_shown_entry(ctx, entry) for entry in loaded()]
        running = [job for job in ctx.jobs.list() if _state(ctx, job) == RunState.RUNNING]
        if in_memory:
            lines.append(f"**Loaded:** {', '.join(in_memory)}")
        elif running:
            lines.append("**Loaded:** nothing in the studio (it freed its models for training)")
        else:
            lines.append("**Loaded:** nothing")
        for job in running:
            lines.append(f"**Training:** job **{job.name}** ({job.id}) runs in its own process with its own base "
                         "model, adapter and face encoder; the studio loads its models again for the next "
                         "generation.")
        return lines

    def machine() -> str:
        device = None
        if ctx.engine_started:
            placement = ctx.manager.placement
            device = f"{placement.device} ({placement.dtype_name}{', low VRAM' if placement.low_vram else ''})"
        report = system_report(device or f"{ctx.options.device} (chosen when the first model loads)")
        lines = [f"**Device:** {report['device']}",
                 f"**RAM:** {format_bytes(report['ram_used_bytes'])} of {format_bytes(report['ram_total_bytes'])} "
                 f"used; the studio holds {format_bytes(report['process_rss_bytes'])}"]
        for gpu in report["gpus"]:
            lines.append(f"**GPU {gpu['name']}:** {format_bytes(gpu['used_bytes'])} of "
                         f"{format_bytes(gpu['total_bytes'])} used ({format_bytes(gpu['allocated_by_studio_bytes'])} "
                         "by the studio)")
        lines += in_use()
        lines.append("**Versions:** " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v))
        lines.append("**Studio folder:** FACESTUDIO_HOME (set when the studio was started)")
        return "\n\n".join(lines)

    def defaults_label() -> str:
        missing = [record for record in default_records(ctx) if hub.cached_path(record) is None]
        if not missing:
            return "Defaults downloaded ✓"
        return f"Download the defaults ({format_bytes(sum(r.size_bytes for r in missing))})"

    def refresh():
        return table(), machine()

    def fetch(names: list[str], progress) -> list[str]:
        """Download `names` one after the other; the hub's reachability is asked first (3 s), so a machine
        without a network gets the guidance at once instead of after the hub client's retries."""
        from facestudio.engine.inventory import download_model

        records = [registry.get(name) for name in names]
        missing = [record for record in records if hub.cached_path(record) is None]
        unreachable = sorted({_hub_name(r.hub) for r in missing if not hub.reachable(r.hub)})
        if unreachable:
            why = ("downloads are off on the studio's machine (HF_HUB_OFFLINE or FACESTUDIO_OFFLINE)" if hub.offline
                   else f"{' and '.join(unreachable)} cannot be reached from the studio's machine")
            raise ModelNotAvailableError(f"Nothing was downloaded: {why}; {OFFLINE_GUIDANCE}.")
        reporter = PageProgress(progress)
        done = []
        for record in missing:
            progress(0.0, desc=f"Asking the hub about {record.key}…")
            path = download_model(registry, hub, record.key, reporter.download)
            done.append(f"{record.key}: {DOWNLOADED} to `{ctx.shown_path(path)}`")
        return done

    @user_errors
    def download(name: str | None, progress=gr.Progress()):  # noqa: B008 (gradio's pattern)
        if not name:
            raise InvalidRequestError("Choose the model to download.")
        if not isinstance(name, str) or name not in registry.records:
            raise InvalidRequestError(f"There is no model {clip(repr(name), 40)}; choose one from the list.")
        if hub.cached_path(registry.get(name)) is not None:
            return f"{name} is already downloaded.", *refresh()
        return ". ".join(fetch([name], progress)) + ".", *refresh()

    @user_errors
    def download_defaults(progress=gr.Progress()):  # noqa: B008 (gradio's pattern)
        names = [record.key for record in default_records(ctx)]
        done = fetch(names, progress)
        message = ("The default models are downloaded: " + "; ".join(done) + ".") if done else \
            "The default models are already downloaded."
        return message, *refresh(), gr.update(value=defaults_label())

    @user_errors
    def unload(what: str | None):
        if what not in (None, "", *(value for _, value in UNLOAD_CHOICES)):
            raise InvalidRequestError(f"Unload one of: {', '.join(v for _, v in UNLOAD_CHOICES)}; got "
                                      f"{clip(repr(what), 40)}.")
        if not ctx.engine_started:
            return "Nothing is loaded.", *refresh()
        freed = ctx.manager.unload(what or "all")
        return (f"Unloaded {', '.join(_shown_entry(ctx, e) for e in freed)}." if freed else "Nothing to unload."), \
            *refresh()

    gr.Markdown("Models download on first use (their size is shown first). Download them here ahead of time, or free "
                "memory by unloading them; they load again when needed.")
    info = gr.Markdown(value=machine(), elem_id="models-machine")
    models = gr.Dataframe(value=table(), headers=MODEL_COLUMNS, label="Models", interactive=False, wrap=True,
                          column_widths=["18%", "14%", "14%", "10%", "44%"], max_height=900, elem_id="models-table")
    with gr.Row(equal_height=True):
        defaults_button = gr.Button(defaults_label(), variant="primary", elem_id="models-download-defaults", scale=2)
        name = gr.Dropdown(label="Model", choices=[(f"{r.key} ({r.kind})", r.key) for r in registry.records.values()],
                           value=None, scale=2)
        download_button = gr.Button("Download", elem_id="models-download", scale=1)
        what = gr.Dropdown(label="Unload", choices=UNLOAD_CHOICES, value="all", scale=2)
        unload_button = gr.Button("Unload", variant="stop", elem_id="models-unload", scale=1)
        refresh_button = gr.Button("Refresh", scale=1, elem_id="models-refresh")
    message = gr.Markdown(elem_id="models-message")
    with gr.Accordion("Models without internet: FACESTUDIO_HOME/models/local/", open=ctx.settings.offline,
                      elem_id="models-local-help"):
        gr.Markdown(LOCAL_HELP)

    # preprocess=False: a value not offered is refused by the handler in one clipped sentence (gradio's own check
    # echoes the whole value back).
    download_button.click(download, name, [message, models, info], api_name="download_model",
                          concurrency_id="downloads", preprocess=False)
    defaults_button.click(download_defaults, None, [message, models, info, defaults_button],
                          api_name="download_defaults", concurrency_id="downloads")
    unload_button.click(unload, what, [message, models, info], api_name="unload", concurrency_id=GPU,
                        preprocess=False)
    refresh_button.click(refresh, None, [models, info], api_name="models_status", queue=False)
    return [refresh, [models, info]]


def _hub_name(hub: str) -> str:
    return "ModelScope" if hub == "modelscope" else "Hugging Face"


def _shown_entry(ctx: StudioContext, entry: str) -> str:
    """`base_model:/abs/path` as the page shows it: `base_model: models/local/x` (no machine path)."""
    kind, _, spec = entry.partition(":")
    if not spec:
        return kind
    return f"{kind}: {ctx.shown_path(spec) if Path(spec).is_absolute() else spec}"


def _state(ctx: StudioContext, job) -> str | None:
    try:
        return ctx.jobs.effective_status(job).state
    except Exception:  # a damaged job folder: not running as far as this tab can tell
        return None
