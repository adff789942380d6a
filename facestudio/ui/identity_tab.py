"""Identity tab: check 1-8 photos of one person (faces numbered on a plain overlay, landmarks and face regions
behind a toggle, aligned crops, head masks, warnings, and how alike the photos are to each other) and keep them under
a name (with the person's subject words) for the other tabs. Clicking a face in a photo picks it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from facestudio.engine.identities import SUBJECT_HINT, inspect_photos, parse_face_indexes
from facestudio.errors import InvalidRequestError
from facestudio.ui.common import GPU, gpu_work, user_errors
from facestudio.ui.context import StudioContext
from facestudio.ui.workspace import Workspace

PHOTO_TYPES = ["image"]
MATRIX_EMPTY = pd.DataFrame({"photo": []})


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


def similarity_matrix(check, threshold: float) -> pd.DataFrame:
    """Identity similarity between every two usable photos (cosine of their embeddings), as a table whose rows and
    columns are the photos' numbers and names: "0.95 ✓" at or above the same-person `threshold`, "0.40 ✗" below."""
    from facestudio.face.identity import cosine_similarity

    usable = [(number, photo) for number, photo in enumerate(check.photos) if photo.embedding is not None]
    if not usable:
        return MATRIX_EMPTY
    names = [f"{number}: {photo.name}" for number, photo in usable]
    rows = []
    for (_, photo), name in zip(usable, names, strict=True):
        values = [float(cosine_similarity(photo.embedding, other.embedding)) for _, other in usable]
        rows.append([name] + [f"{value:.2f} {'✓' if value >= threshold else '✗'}" for value in values])
    return pd.DataFrame(rows, columns=["photo", *names])


def set_face(used: str, count: int, photo: int, face: int) -> str:
    """The "face used" text with photo `photo`'s entry set to `face` (the others kept; missing ones are 0)."""
    parts = [part.strip() for part in (used or "").replace(";", ",").split(",") if part.strip()]
    values = [int(part) if part.isdigit() else 0 for part in parts][:count]
    values += [0] * (count - len(values))
    values[photo] = face
    return ", ".join(str(value) for value in values)


def build_identity_tab(ctx: StudioContext) -> IdentityTab:
    @user_errors
    @gpu_work(60)
    def analyze(files, faces_used: str):
        from facestudio.face import load_image
        from facestudio.face.debug import draw_faces

        paths = uploaded_paths(ctx, files)
        check = _inspect(paths, faces_used)
        plain, regions, crops, masks = [], [], [], []
        for number, photo in enumerate(check.photos):
            label = f"{number}: {photo.name} · {len(photo.faces)} face(s)"
            label += "" if photo.face_index is None else f", using {photo.face_index}"
            image = load_image(photo.path, name=photo.name, max_pixels=ctx.settings.max_pixels)
            plain.append((draw_faces(image, [f.bbox for f in photo.faces], photo.face_index), label))
            regions.append((photo.overlay, label))
            if photo.crop is not None:
                crops.append((photo.crop, f"{number}: {photo.name}"))
                masks.append((photo.head_mask, f"{number}: {photo.name}"))
        warnings = check.all_warnings
        summary = (f"**{len(check.usable)} of {len(check.photos)} photo(s) usable.**" +
                   ("" if not warnings else "\n\n" + "\n".join(f"- ⚠️ {w}" for w in warnings)))
        used = ", ".join("0" if p.face_index is None else str(p.face_index) for p in check.photos)
        matrix = similarity_matrix(check, ctx.manager.analyzer().embedder.threshold)
        return plain, crops, masks, summary, check.to_dict(), used, matrix, regions

    def _inspect(paths, faces_used: str):
        faces_used = faces_used if isinstance(faces_used, str) else ""
        return inspect_photos(ctx.manager.analyzer(), paths, parse_face_indexes(faces_used, len(paths)),
                              names=[p.name for p in paths], max_pixels=ctx.settings.max_pixels)

    @user_errors
    @gpu_work(60)
    def save(files, faces_used: str, name: str, replace: bool, subject: str | None = None,
             request: gr.Request = None):
        ws = ctx.workspace(request)
        paths = uploaded_paths(ctx, files)
        check = _inspect(paths, faces_used)
        identity = ws.identities.save(name if isinstance(name, str) else "", check, overwrite=replace is True,
                                      subject=subject if isinstance(subject, str) else "")
        skipped = len(check.photos) - len(check.usable)
        note = f" ({skipped} photo(s) without a face left out)" if skipped else ""
        words = f", subject words “{identity.subject}”" if identity.subject else ""
        hint = "" if identity.subject else f" {SUBJECT_HINT}"
        return (f"Saved **{identity.name}** with {len(identity.photos)} photo(s){words}{note}.{hint}",
                gr.update(choices=identity_choices(ctx, ws), value=identity.name))

    @user_errors
    def show_saved(name: str | None, request: gr.Request = None):
        ws = ctx.workspace(request)
        if not name:
            return [], damaged_note(ctx, ws)
        from facestudio.face import load_image

        identity = ws.identities.get(name)
        words = f" Subject words: “{identity.subject}”." if identity.subject else ""
        return ([(load_image(p, name=p.name, max_pixels=ctx.settings.max_pixels), p.name) for p in identity.photos],
                f"**{identity.name}**: {len(identity.photos)} photo(s), saved {identity.created}.{words}")

    @user_errors
    def delete(name: str | None, request: gr.Request = None):
        ws = ctx.workspace(request)
        if not name:
            raise InvalidRequestError("Choose the identity to delete.")
        ws.identities.delete(name)
        return (f"Deleted **{name}**. {damaged_note(ctx, ws)}",
                gr.update(choices=identity_choices(ctx, ws), value=None),
                [])

    def open_photo(gallery, evt: gr.SelectData):
        """A photo chosen in the overlay gallery, shown large to click its faces."""
        index = evt.index if isinstance(evt.index, int) else 0
        items = gallery or []
        if not 0 <= index < len(items):
            return gr.skip(), 0
        item = items[index]
        image = item[0] if isinstance(item, list | tuple) else (item.get("image") if isinstance(item, dict) else item)
        if isinstance(image, dict):
            image = image.get("path")
        return image, index

    @user_errors
    def pick_face(photo: int, report: dict | None, used: str, evt: gr.SelectData):
        """A click on a face of the opened photo: that face is used for it (the analysis runs again)."""
        photos = (report or {}).get("photos") or []
        if not isinstance(photo, int) or not 0 <= photo < len(photos):
            raise InvalidRequestError("Analyze the photos first, then click a face.")
        x, y = (float(v) for v in evt.index)
        from facestudio.face.debug import face_at

        face = face_at(photos[photo].get("boxes") or [], x, y)
        if face is None:
            raise InvalidRequestError("No face there; click inside one of the numbered boxes.")
        return set_face(used, len(photos), photo, face), f"Photo {photo}: face {face} picked."

    gr.Markdown("Upload 1–8 photos of **one** person and press Analyze. Each photo shows the faces found, numbered "
                "(0 = largest; the one used in green); click a photo, then click a face in it to use that face. "
                "Below: the aligned crops FACT's face encoder receives, the head masks, and how alike the photos "
                "are. Save the photos under a name to reuse them in the other tabs.")
    with gr.Row():
        with gr.Column(scale=1):
            photos = gr.File(label="Photos of one person (1–8)", file_count="multiple", file_types=PHOTO_TYPES,
                             height=140, elem_id="identity-photos")
            analyze_button = gr.Button("Analyze", variant="primary", elem_id="identity-analyze")
            status = gr.Markdown(elem_id="identity-status")
            with gr.Group():
                name = gr.Textbox(label="Identity name", placeholder="e.g. Alex", max_length=64,
                                  elem_id="identity-name")
                subject = gr.Textbox(label="Subject words (optional)", placeholder="e.g. a woman, 25-year-old",
                                     max_length=120, elem_id="identity-subject",
                                     info="put before every prompt with this identity, as the FACT release does")
                replace = gr.Checkbox(label="Replace a saved identity of the same name", value=False)
                save_button = gr.Button("Save identity", elem_id="identity-save")
            faces_used = gr.Textbox(label="Face used in each photo", placeholder="0, 0, 1",
                                    info="Filled in by the analysis and by clicking a face; one number per photo.",
                                    elem_id="identity-faces-used")
        with gr.Column(scale=2):
            regions_toggle = gr.Checkbox(label="Show landmarks and face regions", value=False,
                                         elem_id="identity-regions-toggle")
            overlays = gr.Gallery(label="Faces found (click a photo to pick its face)", columns=4, height=300,
                                  format="png", object_fit="contain", allow_preview=False,
                                  elem_id="identity-overlays")
            regions = gr.Gallery(label="Landmarks and face regions", columns=4, height=300, format="png",
                                 object_fit="contain", visible=False, elem_id="identity-regions")
            with gr.Row():
                picker = gr.Image(label="Click a face to use it", interactive=False, height=300, type="filepath",
                                  elem_id="identity-picker")
                matrix = gr.Dataframe(value=MATRIX_EMPTY, label="How alike the photos are (identity similarity: "
                                      "✓ the same person, ✗ not)", interactive=False, wrap=True,
                                      elem_id="identity-matrix")
            with gr.Row():
                crops = gr.Gallery(label="Aligned crops (FACT input)", columns=4, height=160, format="png",
                                   object_fit="contain")
                masks = gr.Gallery(label="Head masks", columns=4, height=160, format="png", object_fit="contain")
            with gr.Accordion("Details (the analysis as JSON)", open=False, elem_id="identity-details"):
                report = gr.JSON(label="Analysis", open=True)
    with gr.Accordion("Saved identities", open=False):
        with gr.Row():
            saved = gr.Dropdown(label="Saved identity", choices=identity_choices(ctx), value=None,
                                allow_custom_value=True, elem_id="identity-saved")
            delete_button = gr.Button("Delete", variant="stop", scale=0)
        saved_info = gr.Markdown(value=damaged_note(ctx))
        saved_photos = gr.Gallery(label="Its photos", columns=8, height=160)
    opened = gr.State(0)

    analysis_outputs = [overlays, crops, masks, status, report, faces_used, matrix, regions]
    analyzing = analyze_button.click(analyze, [photos, faces_used], analysis_outputs, api_name="analyze",
                                     concurrency_id=GPU, preprocess=False)
    analyzing.success(open_first, overlays, [picker, opened], api_visibility="private", queue=False)
    overlays.select(open_photo, overlays, [picker, opened], api_visibility="private", queue=False)
    picking = picker.select(pick_face, [opened, report, faces_used], [faces_used, status], api_visibility="private",
                            queue=False)
    picking.success(analyze, [photos, faces_used], analysis_outputs, api_visibility="private", concurrency_id=GPU,
                    preprocess=False).success(reopen, [overlays, opened], picker, api_visibility="private",
                                              queue=False)
    regions_toggle.change(lambda show: (gr.update(visible=not show), gr.update(visible=show)), regions_toggle,
                          [overlays, regions], api_visibility="private", queue=False)
    saving = save_button.click(save, [photos, faces_used, name, replace, subject], [status, saved],
                               api_name="save_identity", concurrency_id=GPU, preprocess=False)
    saved.change(show_saved, saved, [saved_photos, saved_info], api_visibility="private")
    deleting = delete_button.click(delete, saved, [saved_info, saved, saved_photos], api_name="delete_identity")
    return IdentityTab(saved=saved, changed=[saving, deleting])


def _gallery_image(item):
    image = item[0] if isinstance(item, list | tuple) else (item.get("image") if isinstance(item, dict) else item)
    return image.get("path") if isinstance(image, dict) else image


def open_first(gallery):
    """After an analysis, the first photo is opened for picking."""
    return (_gallery_image(gallery[0]) if gallery else None), 0


def reopen(gallery, index: int):
    """After a pick, the same photo again, with its new face in green."""
    items = gallery or []
    return _gallery_image(items[index]) if isinstance(index, int) and 0 <= index < len(items) else None

