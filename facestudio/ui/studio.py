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
#: The page's own rules (given to `launch(css=...)`): a compact title, gallery captions that wrap instead of being
#: cut ("Astron…"), card grids whose columns shrink to fit instead of overflowing, and the status beside a button.
STUDIO_CSS = """
#studio-title h2 { margin: 0; font-size: 1.35rem; }
#studio-title small { font-weight: normal; font-size: 0.85rem; opacity: 0.75; }
.fs-cards .grid-container, .fs-labelled .grid-container {
  grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr)) !important;
  grid-template-rows: none !important; grid-auto-rows: auto !important; }
.fs-cards .grid-wrap, .fs-labelled .grid-wrap { overflow-y: auto !important; padding-top: 30px !important; }
.fs-cards .grid-container { gap: 6px !important; }
.fs-cards .caption-label, .fs-labelled .caption-label {
  white-space: normal !important; overflow: visible !important; max-width: none !important; left: 0; right: 0;
  bottom: 0; border-radius: 0 !important; text-align: center; line-height: 1.2; opacity: 0.92 !important; }
.fs-cards .caption-label { font-size: 11px !important; padding: 1px 2px !important; }
#generate-history .caption-label { font-size: 11px !important; }
.fs-labelled .caption-label { font-size: 12px !important; padding: 2px 4px !important; }
.fs-status { min-height: 44px; }
.fs-status .progress-text, .fs-status .progress-level-inner { font-family: var(--font) !important;
  font-size: 12px !important; line-height: 1.3; white-space: normal; }
.fs-status .progress-level { padding-right: 52px; }
.fs-status p { margin: 0; }
"""


def build_studio(ctx: StudioContext) -> gr.Blocks:
    stops = StopFlags()
    with gr.Blocks(title="FaceStudio", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(f"## FaceStudio <small>· new portraits of a person from a few photos, with the FACT face "
                    f"adapter · v{__version__}</small>", elem_id="studio-title")
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

        def refresh_identities(request: gr.Request = None):
            choices = identity_choices(ctx, ctx.workspace(request))
            return [gr.update(choices=choices) for _ in identity_lists]

        for event in identity.changed:
            event.success(refresh_identities, None, identity_lists, api_visibility="private", queue=False)

        def on_load(request: gr.Request = None):  # each visitor's own lists (workspace.py)
            ws = ctx.workspace(request)
            choices = identity_choices(ctx, ws)
            job, jobs = train.refresh[0](ws)
            return (gr.update(choices=choices), *(gr.update(choices=choices) for _ in identity_lists),
                    gr.update(choices=ctx.adapter_choices(ws)), job, jobs, *models_refresh())

        demo.load(on_load, None, [identity.saved, *identity_lists, generate.adapter, *train.refresh[1],
                                  *models_outputs], api_visibility="private", queue=False)
        demo.load(generate.on_load, None, generate.load_outputs, api_visibility="private", queue=False)
    demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=1)
    return demo
