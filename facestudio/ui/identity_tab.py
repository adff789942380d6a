"""Identity tab: check 1-8 photos of one person (faces, landmarks, aligned crops, head masks, warnings) and keep
them under a name for the other tabs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from facestudio.engine.identities import inspect_photos, parse_face_indexes
from facestudio.errors import InvalidRequestError
from facestudio.ui.common import GPU, gpu_work, user_errors
from facestudio.ui.context import StudioContext
from facestudio.ui.workspace import Workspace

PHOTO_TYPES = ["image"]


@dataclass
class IdentityTab:
    saved: gr.Dropdown
    changed: list  # events after which the list of saved identities may differ


def identity_choices(ctx: StudioContext, ws: Workspace | None = None) -> list[str]:
    """The saved identities of workspace `ws` (`None`: what a page shows before it knows who is looking)."""
    return [identity.name for identity in (ws or ctx.workspace()).identities.list()]


def damaged_note(ctx: StudioContext, ws: Workspace | None = None) -> str:
    """The saved identities whose record cannot be read: named on the page (they are left out of the lists and can
    be deleted by typing their name)."""
    damaged = (ws or ctx.workspace()).identities.damaged()
    return "" if not damaged else ("⚠️ Damaged identities (left out; type the name and Delete to remove): " +
                                   ", ".join(damaged))


def uploaded_paths(ctx: StudioContext, files, what: str = "photo") -> list[Path]:
    """The files of a multi-file upload (paths, or gradio's file dicts as sent), each checked by
    `StudioContext.uploaded_file`."""
    if files is None or files == "":
        return []
    if isinstance(files, str | dict):
        files = [files]
    if not isinstance(files, list | tuple):
        raise InvalidRequestError(f"The {what}s must be a list of uploaded files.")
    return [path for path in (ctx.uploaded_file(value, what) for value in files) if path is not None]


def reference_photos(ctx: StudioContext, identity: str | None, files, ws: Workspace | None = None) -> list[str]:
    """The photos a generation uses: uploaded ones win; else the saved identity's (of the asker's workspace `ws`:
    another user's is "no saved identity" like a missing one); else an error."""
    uploaded = uploaded_paths(ctx, files, "reference photo")
    if uploaded:
        return [str(p) for p in uploaded]
    if identity:
        if not isinstance(identity, str):
            raise InvalidRequestError("The saved identity must be one of the names in the list.")
        return [str(p) for p in (ws or ctx.workspace()).identities.get(identity).photos]
    raise InvalidRequestError("Choose a saved identity or upload photos of the person.")


def build_identity_tab(ctx: StudioContext) -> IdentityTab:
    @user_errors
    @gpu_work(60)
    def analyze(files, faces_used: str):
        paths = uploaded_paths(ctx, files)
        check = _inspect(paths, faces_used)
        overlays, crops, masks = [], [], []
        for number, photo in enumerate(check.photos):
            label = f"{number}: {photo.name} · {len(photo.faces)} face(s)"
            overlays.append((photo.overlay, label + ("" if photo.face_index is None else f", using {photo.face_index}")))
            if photo.crop is not None:
                crops.append((photo.crop, f"{number}: {photo.name}"))
                masks.append((photo.head_mask, f"{number}: {photo.name}"))
        warnings = check.all_warnings
        summary = (f"**{len(check.usable)} of {len(check.photos)} photo(s) usable.**" +
                   ("" if not warnings else "\n\n" + "\n".join(f"- ⚠️ {w}" for w in warnings)))
        used = ", ".join("0" if p.face_index is None else str(p.face_index) for p in check.photos)
        return overlays, crops, masks, summary, check.to_dict(), used

    def _inspect(paths, faces_used: str):
        faces_used = faces_used if isinstance(faces_used, str) else ""
        return inspect_photos(ctx.manager.analyzer(), paths, parse_face_indexes(faces_used, len(paths)),
                              names=[p.name for p in paths], max_pixels=ctx.settings.max_pixels)

    @user_errors
    @gpu_work(60)
    def save(files, faces_used: str, name: str, replace: bool, request: gr.Request = None):
        ws = ctx.workspace(request)
        paths = uploaded_paths(ctx, files)
        check = _inspect(paths, faces_used)
        identity = ws.identities.save(name if isinstance(name, str) else "", check, overwrite=replace is True)
        skipped = len(check.photos) - len(check.usable)
        note = f" ({skipped} photo(s) without a face left out)" if skipped else ""
        return (f"Saved **{identity.name}** with {len(identity.photos)} photo(s){note}.",
                gr.update(choices=identity_choices(ctx, ws), value=identity.name))

    @user_errors
    def show_saved(name: str | None, request: gr.Request = None):
        ws = ctx.workspace(request)
        if not name:
            return [], damaged_note(ctx, ws)
        from facestudio.face import load_image

        identity = ws.identities.get(name)
        return ([(load_image(p, name=p.name, max_pixels=ctx.settings.max_pixels), p.name) for p in identity.photos],
                f"**{identity.name}**: {len(identity.photos)} photo(s), saved {identity.created}.")

    @user_errors
    def delete(name: str | None, request: gr.Request = None):
        ws = ctx.workspace(request)
        if not name:
            raise InvalidRequestError("Choose the identity to delete.")
        ws.identities.delete(name)
        return (f"Deleted **{name}**. {damaged_note(ctx, ws)}",
                gr.update(choices=identity_choices(ctx, ws), value=None),
                [])

    gr.Markdown("Upload 1–8 photos of **one** person. Each photo shows the faces found (numbered, 0 = largest) with "
                "their five landmarks and face regions; below are the aligned crops FACT's face encoder receives and "
                "the head masks. Save the photos under a name to reuse them in the other tabs.")
    with gr.Row():
        with gr.Column(scale=1):
            photos = gr.File(label="Photos of one person (1–8)", file_count="multiple", file_types=PHOTO_TYPES,
                             elem_id="identity-photos")
            faces_used = gr.Textbox(label="Face used in each photo", placeholder="0, 0, 1",
                                    info="Comma-separated face numbers, one per photo (0 = the largest face). "
                                         "Filled in after the analysis; change it when a photo shows several people.",
                                    elem_id="identity-faces-used")
            analyze_button = gr.Button("Analyze", variant="primary", elem_id="identity-analyze")
            with gr.Group():
                name = gr.Textbox(label="Identity name", placeholder="e.g. Alex", max_length=64,
                                  elem_id="identity-name")
                replace = gr.Checkbox(label="Replace a saved identity of the same name", value=False)
                save_button = gr.Button("Save identity", elem_id="identity-save")
            status = gr.Markdown(elem_id="identity-status")
        with gr.Column(scale=2):
            overlays = gr.Gallery(label="Faces found", columns=4, height=360, format="png", object_fit="contain",
                                  elem_id="identity-overlays")
            with gr.Row():
                crops = gr.Gallery(label="Aligned crops (FACT input)", columns=4, height=180, format="png",
                                   object_fit="contain")
                masks = gr.Gallery(label="Head masks", columns=4, height=180, format="png", object_fit="contain")
            report = gr.JSON(label="Analysis", open=False)
    with gr.Accordion("Saved identities", open=False):
        with gr.Row():
            saved = gr.Dropdown(label="Saved identity", choices=identity_choices(ctx), value=None,
                                allow_custom_value=True, elem_id="identity-saved")
            delete_button = gr.Button("Delete", variant="stop", scale=0)
        saved_info = gr.Markdown(value=damaged_note(ctx))
        saved_photos = gr.Gallery(label="Its photos", columns=8, height=160)

    analyze_button.click(analyze, [photos, faces_used], [overlays, crops, masks, status, report, faces_used],
                         api_name="analyze", concurrency_id=GPU, preprocess=False)
    saving = save_button.click(save, [photos, faces_used, name, replace], [status, saved], api_name="save_identity",
                               concurrency_id=GPU, preprocess=False)
    saved.change(show_saved, saved, [saved_photos, saved_info], api_visibility="private")
    deleting = delete_button.click(delete, saved, [saved_info, saved, saved_photos], api_name="delete_identity")
    return IdentityTab(saved=saved, changed=[saving, deleting])
