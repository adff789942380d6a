"""Models tab: each model's state (not downloaded / downloaded / loaded) and size, downloads with progress, unload;
the device, GPU and RAM use, and versions."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from facestudio.engine.hub import ModelHub, format_bytes
from facestudio.engine.inventory import DOWNLOADED, model_states, system_report
from facestudio.errors import InvalidRequestError
from facestudio.ui.common import GPU, PageProgress, user_errors
from facestudio.ui.context import StudioContext, clip

MODEL_COLUMNS = ["name", "kind", "state", "size", "source"]
UNLOAD_CHOICES = [("everything", "all"), ("base model + adapter", "base_model"), ("face encoder", "face_encoder"),
                  ("pose ControlNet", "controlnet"), ("face analyzer", "face_analyzer")]


def build_models_tab(ctx: StudioContext) -> list:
    registry = ctx.registry
    hub = ModelHub(ctx.home, offline=ctx.settings.offline)

    def loaded() -> list[str]:
        return ctx.manager.loaded() if ctx.engine_started else []

    def table() -> pd.DataFrame:
        rows = [[row.name, row.kind, row.state, f"~{format_bytes(row.size_bytes)}", row.source]
                for row in model_states(registry, hub, loaded())]
        return pd.DataFrame(rows, columns=MODEL_COLUMNS)

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
        in_memory = loaded()
        lines.append(f"**Loaded:** {', '.join(in_memory) if in_memory else 'nothing'}")
        lines.append("**Versions:** " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v))
        lines.append("**Studio folder:** FACESTUDIO_HOME (set when the studio was started)")
        return "\n\n".join(lines)

    def refresh():
        return table(), machine()

    @user_errors
    def download(name: str | None, progress=gr.Progress()):  # noqa: B008 (gradio's pattern)
        from facestudio.engine.inventory import download_model

        if not name:
            raise InvalidRequestError("Choose the model to download.")
        if not isinstance(name, str) or name not in registry.records:
            raise InvalidRequestError(f"There is no model {clip(repr(name), 40)}; choose one from the list.")
        record = registry.get(name)
        if hub.cached_path(record) is not None:
            return f"{name} is already downloaded.", *refresh()
        reporter = PageProgress(progress)
        progress(0.0, desc=f"Asking the hub about {name}…")
        path = download_model(registry, hub, name, reporter.download)
        return f"{name}: {DOWNLOADED} to `{ctx.shown_path(path)}`.", *refresh()

    @user_errors
    def unload(what: str | None):
        if what not in (None, "", *(value for _, value in UNLOAD_CHOICES)):
            raise InvalidRequestError(f"Unload one of: {', '.join(v for _, v in UNLOAD_CHOICES)}; got "
                                      f"{clip(repr(what), 40)}.")
        if not ctx.engine_started:
            return "Nothing is loaded.", *refresh()
        freed = ctx.manager.unload(what or "all")
        return (f"Unloaded {', '.join(freed)}." if freed else "Nothing to unload."), *refresh()

    gr.Markdown("Models download on first use (their size is shown first). Download them here ahead of time, or free "
                "memory by unloading them; they load again when needed.")
    models = gr.Dataframe(value=table(), headers=MODEL_COLUMNS, label="Models", interactive=False,
                          elem_id="models-table")
    with gr.Row():
        name = gr.Dropdown(label="Model", choices=[(f"{r.key} ({r.kind})", r.key) for r in registry.records.values()],
                           value=None)
        download_button = gr.Button("Download", elem_id="models-download")
        what = gr.Dropdown(label="Unload", choices=UNLOAD_CHOICES, value="all")
        unload_button = gr.Button("Unload", variant="stop", elem_id="models-unload")
    message = gr.Markdown()
    info = gr.Markdown(value=machine(), elem_id="models-machine")
    refresh_button = gr.Button("Refresh", size="sm")

    # preprocess=False: a value not offered is refused by the handler in one clipped sentence (gradio's own check
    # echoes the whole value back).
    download_button.click(download, name, [message, models, info], api_name="download_model",
                          concurrency_id="downloads", preprocess=False)
    unload_button.click(unload, what, [message, models, info], api_name="unload", concurrency_id=GPU,
                        preprocess=False)
    refresh_button.click(refresh, None, [models, info], api_name="models_status", queue=False)
    return [refresh, [models, info]]
