"""The studio page: five tabs over one `StudioContext`, wired so that what one tab changes (a saved identity, a
finished training job) shows up in the others without a restart."""

from __future__ import annotations

import gradio as gr

from facestudio import __version__
from facestudio.ui.context import StudioContext
from facestudio.ui.generate_tab import StopFlags, build_generate_tab
from facestudio.ui.identity_tab import build_identity_tab, identity_choices
from facestudio.ui.inpaint_tab import build_inpaint_tab
from facestudio.ui.models_tab import build_models_tab
from facestudio.ui.train_tab import build_train_tab

#: Waiting requests beyond this are refused with "the queue is full" instead of piling up.
MAX_QUEUE = 32
#: Gradio's upload cache (uploads, results handed out) is swept every hour of files older than a day.
DELETE_CACHE = (3600, 86400)
THEME = gr.themes.Soft(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def build_studio(ctx: StudioContext) -> gr.Blocks:
    stops = StopFlags()
    with gr.Blocks(title="FaceStudio", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(f"# FaceStudio\nNew portraits of a person from a few photos, with the FACT face adapter · "
                    f"v{__version__}")
        if ctx.preset_problems:
            gr.Markdown("⚠️ Some style presets could not be loaded: " + "; ".join(ctx.preset_problems))
        with gr.Tabs():
            with gr.Tab("Identity", id="identity"):
                identity = build_identity_tab(ctx)
            with gr.Tab("Generate", id="generate"):
                generate = build_generate_tab(ctx, stops)
            with gr.Tab("Inpaint", id="inpaint"):
                inpaint_identity = build_inpaint_tab(ctx, stops)
            with gr.Tab("Train", id="train"):
                train = build_train_tab(ctx)
            with gr.Tab("Models", id="models") as models_tab:
                models_refresh, models_outputs = build_models_tab(ctx)
        # What is loaded changes with every generation and training job: the tab is read again when opened.
        models_tab.select(models_refresh, None, models_outputs, api_visibility="private", queue=False)

        identity_lists = [generate.identity, inpaint_identity]
        if train.identity is not None:
            identity_lists.append(train.identity)

        def refresh_identities():
            choices = identity_choices(ctx)
            return [gr.update(choices=choices) for _ in identity_lists]

        for event in identity.changed:
            event.success(refresh_identities, None, identity_lists, api_visibility="private", queue=False)

        def on_load():
            choices = identity_choices(ctx)
            job, jobs = train.refresh[0]()
            return (gr.update(choices=choices), *(gr.update(choices=choices) for _ in identity_lists),
                    gr.update(choices=ctx.adapter_choices()), job, jobs, *models_refresh())

        demo.load(on_load, None, [identity.saved, *identity_lists, generate.adapter, *train.refresh[1],
                                  *models_outputs], api_visibility="private", queue=False)
    demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=1)
    return demo
