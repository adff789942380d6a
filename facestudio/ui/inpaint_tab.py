"""Inpaint tab: put the person into one face of a template photo, on one canvas: upload the template, click a face
to pick it (the faces are numbered, the picked one in green), or switch the canvas to painting your own mask; the
result is shown beside it against the template on a before/after slider. Several people: each picked face gets a
saved identity or photos uploaded for it in the assignments list, and one Inpaint paints them all."""

from __future__ import annotations

import re
import uuid

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from facestudio.engine.requests import (
    MAX_ASSIGNMENTS,
    MAX_REFERENCE_PHOTOS,
    MAX_SEED,
    RECIPES,
    FaceAssignment,
    InpaintRequest,
    field_default,
)
from facestudio.errors import InvalidRequestError
from facestudio.ui.common import GPU, PageProgress, gpu_work, similarity_caption, user_errors
from facestudio.ui.context import StudioContext, clip
from facestudio.ui.generate_tab import StopFlags, checked, session_of, should_stop
from facestudio.ui.identity_tab import identity_choices, reference_photos, uploaded_paths
from facestudio.ui.workspace import Workspace

MASK_MODES = [("Face (automatic)", "face"), ("Head and hair (automatic)", "head"), ("Painted on the canvas", "painted")]


def painted_mask(ctx: StudioContext, editor_value) -> np.ndarray | None:
    """The union of the painted layers' alpha (white = repaint) as `uint8[H, W]`; None when nothing is painted.
    Layers come as sent (uploaded files), each checked by `ctx.uploaded_file` and `load_image` before it is read."""
    from facestudio.face import load_image

    if not editor_value or not isinstance(editor_value, dict):
        return None
    layers = editor_value.get("layers") or []
    if not isinstance(layers, list):
        raise InvalidRequestError("The painted mask must be a list of image layers; paint it again.")
    mask = None
    for layer in layers:
        path = ctx.uploaded_file(layer, "painted layer")
        if path is None:
            continue
        load_image(path, name=path.name, max_pixels=ctx.settings.max_pixels)  # refuses bombs and broken files
        with Image.open(path) as opened:
            array = np.asarray(opened.convert("RGBA") if "A" in opened.getbands() else opened.convert("L"))
        alpha = array[..., 3] if array.ndim == 3 else array
        if mask is not None and alpha.shape != mask.shape:
            raise InvalidRequestError("The painted layers differ in size; paint the mask again.")
        mask = alpha if mask is None else np.maximum(mask, alpha)
    if mask is None or not mask.any():
        return None
    return ((mask > 0) * 255).astype(np.uint8)


#: The assignments list's columns (the page's table and an API client's `assignments` value).
ASSIGNMENT_COLUMNS = ["face", "identity"]
#: How the list names photos uploaded for a face ("3 uploaded photos"). The photos themselves stay on the server,
#: in the session's state (`FacePhotos`), so no path of the machine reaches the page.
UPLOADED = re.compile(r"^(\d+) uploaded photos?$")
#: Face number -> the checked upload paths of the photos uploaded for it (a `gr.State`, never sent to a browser).
FacePhotos = dict[int, list[str]]


def uploaded_label(count: int) -> str:
    return f"{count} uploaded photo{'' if count == 1 else 's'}"


def assignment_rows(value) -> list[tuple[int, str]]:
    """The assignments list as sent (a table `{"headers", "data"}`, a list of rows or of `{"face", "identity"}`
    objects) as (face number, identity name) pairs, blank rows left out; anything else is one sentence."""
    if value is None or value == "":
        return []
    rows = value.get("data") if isinstance(value, dict) else value
    if not isinstance(rows, list):
        raise InvalidRequestError("The assignments must be a table of face numbers and identity names.",
                                  field="assignments")
    pairs: list[tuple[int, str]] = []
    for row in rows:
        if isinstance(row, dict):
            face, name = row.get("face"), row.get("identity")
        elif isinstance(row, list | tuple):
            face, name = (*row, None, None)[:2]
        else:
            face, name = row, None
        if (face is None or face == "") and not name:
            continue
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequestError(f"The assignment of face {clip(repr(face), 20)} names no saved identity.",
                                      field="assignments")
        pairs.append((checked(InpaintRequest, "face_index", face), name.strip()))
    if len(pairs) > MAX_ASSIGNMENTS:
        raise InvalidRequestError(f"`assignments` lists {len(pairs)} faces; at most {MAX_ASSIGNMENTS}.",
                                  field="assignments")
    return pairs


def added_assignment(current, face, name, names: list[str], uploaded: int = 0) -> list[tuple[int, str]]:
    """The list after "Add": `face` = `name` (one of the saved `names`), or `uploaded` photos uploaded for it
    (they win over the name, as uploads do everywhere), replacing what that face had."""
    if face is None or face == "":
        raise InvalidRequestError("Pick a face first: upload the template and click the face.")
    if uploaded > MAX_REFERENCE_PHOTOS:
        raise InvalidRequestError(f"Upload at most {MAX_REFERENCE_PHOTOS} photos for one face; got {uploaded}.")
    if not uploaded and (not name or name not in names):
        raise InvalidRequestError("Choose one of the saved identities for the face, or upload photos for it.")
    index = checked(InpaintRequest, "face_index", face)
    person = uploaded_label(uploaded) if uploaded else str(name)
    return sorted([pair for pair in assignment_rows(current) if pair[0] != index] + [(index, person)])


def removed_assignment(current, face) -> list[tuple[int, str]]:
    """The list after "Remove": without the picked face (a face not listed is one sentence)."""
    if face is None or face == "":
        raise InvalidRequestError("Pick the face to remove from the list first.")
    index = checked(InpaintRequest, "face_index", face)
    pairs = assignment_rows(current)
    if index not in [f for f, _ in pairs]:
        raise InvalidRequestError(f"Face {index} is not in the list.")
    return [pair for pair in pairs if pair[0] != index]


def kept_photos(held: FacePhotos | None, pairs: list[tuple[int, str]]) -> FacePhotos:
    """The uploaded photos still listed (a face that now has a saved identity, or none, drops its photos)."""
    listed = {face for face, name in pairs if UPLOADED.match(name)}
    return {face: list(paths) for face, paths in (held or {}).items() if face in listed}


def assignment_table(pairs: list[tuple[int, str]]) -> pd.DataFrame:
    return pd.DataFrame([[face, name] for face, name in sorted(pairs)], columns=ASSIGNMENT_COLUMNS)


def face_assignments(ctx: StudioContext, pairs: list[tuple[int, str]], ws: Workspace,
                     held: FacePhotos | None = None) -> tuple[FaceAssignment, ...]:
    """Each listed face with its photos: the ones uploaded for it (`held`, checked again by the studio's loader:
    an upload gone from the cache is one sentence), like the CLI's `--assign I=REF,REF`, or its saved identity's
    (of the asker's workspace), like `--assign I=identity:NAME`."""
    assignments = []
    for face, name in pairs:
        if UPLOADED.match(name) and face in (held or {}):
            paths = [ctx.uploaded_image(path, f"photo uploaded for face {face}") for path in (held or {})[face]]
            assignments.append(FaceAssignment(face, tuple(str(p) for p in paths if p is not None)))
        elif UPLOADED.match(name):
            raise InvalidRequestError(f"The photos uploaded for face {face} are not here any more (the page was "
                                      "reloaded); upload them again and Add.", field="assignments")
        else:
            identity = ws.identities.get(name)
            assignments.append(FaceAssignment(face, tuple(str(p) for p in identity.photos), identity.name))
    return tuple(assignments)


def default(name: str):
    """A control's initial value: the inpainting request field's default."""
    return field_default(InpaintRequest, name)


def models_for(ctx: StudioContext, pose_controlnet: str | None, canny_controlnet: str | None):
    """The studio's models with the ControlNets picked on the page (the empty choice keeps the studio's)."""
    import dataclasses

    models = ctx.default_models()
    pose = ctx.checked_choice(pose_controlnet, lambda: ctx.controlnet_choices("controlnet"), "pose ControlNet")
    canny = ctx.checked_choice(canny_controlnet, lambda: ctx.controlnet_choices("canny_controlnet"),
                               "Canny ControlNet")
    return dataclasses.replace(models, controlnet=pose or models.controlnet,
                               canny_controlnet=canny or models.canny_controlnet)


def build_inpaint_tab(ctx: StudioContext, stops: StopFlags) -> gr.Dropdown:
    @user_errors
    @gpu_work(60)
    def show_faces(template):
        from facestudio.face import load_image
        from facestudio.face.debug import draw_faces

        path = ctx.uploaded_file(template, "template photo")
        if path is None:
            return None, gr.update(choices=[], value=None), None, []
        image = load_image(path, name=path.name, max_pixels=ctx.settings.max_pixels)
        faces = ctx.manager.analyzer().analyze(image).faces
        if not faces:
            raise InvalidRequestError(f"No face found in {path.name}; use a template photo with a visible face, or "
                                      "paint the mask yourself.")
        boxes = [[float(v) for v in face.bbox] for face in faces]
        overlay = draw_faces(image, boxes, chosen=0)
        choices = [(f"face {i} ({face.width:.0f} px wide)", i) for i, face in enumerate(faces)]
        editor = {"background": np.asarray(image), "layers": [], "composite": None}
        return overlay, gr.update(choices=choices, value=0), editor, boxes

    @user_errors
    def pick_face(template, boxes, evt: gr.SelectData):
        """A click on the numbered template: the face under it is the one to replace."""
        from facestudio.face.debug import face_at

        x, y = (float(v) for v in evt.index)
        face = face_at(boxes or [], x, y)
        if face is None:
            raise InvalidRequestError("No face there; click inside one of the numbered boxes.")
        return face, *redraw(template, boxes, face)

    @user_errors
    def redraw(template, boxes, face):
        """The numbered template with `face` in green, and the line that names it."""
        from facestudio.face import load_image
        from facestudio.face.debug import draw_faces

        path = ctx.uploaded_file(template, "template photo")
        if path is None or not boxes:
            return gr.skip(), ""
        index = face if isinstance(face, int) and 0 <= face < len(boxes) else 0
        image = load_image(path, name=path.name, max_pixels=ctx.settings.max_pixels)
        return draw_faces(image, boxes, chosen=index), f"Face **{index}** of {len(boxes)} will be replaced."

    @user_errors
    @gpu_work(180)
    def inpaint(identity, photos, template, face_index, mask_mode, editor, dilate, feather, prompt, negative,
                denoise, strength, steps, seed, randomize, recipe=None, assignments=None, pose_controlnet=None,
                canny_controlnet=None, held_photos=None,
                progress=gr.Progress(), request: gr.Request = None):  # noqa: B008 (gradio's pattern)
        ws = ctx.workspace(request)
        # Several people: the listed faces, each with its saved identity or the photos uploaded for it (the single
        # person's photos unused); the one-pass recipe unless one is given, like the CLI's --assign.
        people = face_assignments(ctx, assignment_rows(assignments), ws, held_photos)
        template_path = ctx.uploaded_image(template, "template photo")
        if template_path is None:
            raise InvalidRequestError("Upload the template photo first.")
        mask = mask_mode or "face"
        if mask == "painted":
            painted = painted_mask(ctx, editor)
            if painted is None:
                raise InvalidRequestError("Paint over the area to replace in the editor, or choose an automatic mask.")
            mask_path = ctx.scratch_dir() / f"mask-{uuid.uuid4().hex}.png"
            Image.fromarray(painted).save(mask_path)
            mask = str(mask_path)
        elif mask not in ("face", "head"):
            raise InvalidRequestError(f"The mask must be face, head or painted; got {clip(repr(mask), 40)}.")
        inpaint_request = InpaintRequest(
            faces=() if people else reference_photos(ctx, identity, photos, ws), image=str(template_path), mask=mask,
            face_index=checked(InpaintRequest, "face_index", face_index or 0), prompt=str(prompt or ""),
            negative_prompt=str(negative or ""), denoise=checked(InpaintRequest, "denoise", denoise),
            face_strength=checked(InpaintRequest, "face_strength", strength),
            steps=checked(InpaintRequest, "steps", steps),
            seed=None if randomize or seed is None or seed == "" else checked(InpaintRequest, "seed", seed),
            mask_dilate_px=None if not dilate else checked(InpaintRequest, "mask_dilate_px", dilate),
            mask_feather_px=None if not feather else checked(InpaintRequest, "mask_feather_px", feather),
            models=models_for(ctx, pose_controlnet, canny_controlnet), recipe=str(recipe or ("single" if people else default("recipe"))),
            assignments=people)
        flag = stops.reset(session_of(request))
        reporter = PageProgress(progress, "Inpainting", requested_steps=inpaint_request.steps,
                                denoise=inpaint_request.denoise)
        progress(0.0, desc="Loading models (first use can take a while)…")
        result = ctx.engine.inpaint(inpaint_request, out_dir=ws.outputs_dir(), on_step=reporter.step,
                                    should_stop=should_stop(flag, request), on_download=reporter.download)
        if not result.images:
            return None, gr.update(), "Stopped before the image was finished.", None
        image = result.images[0]
        info = f"Seed used: **{image.seed}** · {similarity_caption(image)}"
        if people:
            info += "  \nPainted: " + ", ".join(f"face {a.face_index} = {a.identity or uploaded_label(len(a.faces))}"
                                                for a in people)
        info += "".join(f"\n- ⚠️ {w}" for w in result.warnings)
        shown = ctx.handout(image.path)
        ctx.results.add(ws, image.path, similarity_caption(image), image.record)  # the viewer's results
        return (str(template_path), shown), image.seed, info, shown

    gr.Markdown("Upload a template photo: its faces are numbered (0 = largest). **Click a face** to replace it, "
                "choose the mask (the face, or the whole head with hair, grown and softened by the sliders), or "
                "switch the canvas to **Paint the mask** yourself. Only the area under the mask changes.")
    with gr.Row():
        with gr.Column(scale=5):
            with gr.Row():
                identity = gr.Dropdown(label="Saved identity", choices=identity_choices(ctx), value=None,
                                       allow_custom_value=True, elem_id="inpaint-identity")
                photos = gr.File(label="…or photos of the person", file_count="multiple", file_types=["image"],
                                 height=100)
            # One canvas: the uploader until a template is there, then the numbered template (click a face), or
            # the mask editor over the template when the mask is painted.
            template = gr.Image(label="Template photo", type="filepath", sources=["upload"], height=420,
                                elem_id="inpaint-template")
            numbered = gr.Image(label="Click the face to replace", interactive=False, height=420, visible=False,
                                buttons=[], elem_id="inpaint-numbered")
            editor = gr.ImageEditor(label="Paint the area to replace (white)", type="numpy", height=420,
                                    sources=[], brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"),
                                    layers=False, visible=False, elem_id="inpaint-editor")
            with gr.Row(equal_height=True):
                picked = gr.Markdown(elem_id="inpaint-picked")
                change = gr.Button("Another template", size="sm", visible=False, scale=0, min_width=150,
                                   elem_id="inpaint-change")
            with gr.Row():
                face_index = gr.Dropdown(label="Face to replace", choices=[], value=None, allow_custom_value=True,
                                         elem_id="inpaint-face", scale=1)
                mask_mode = gr.Radio(label="Mask", choices=MASK_MODES, value="face", scale=2,
                                     elem_id="inpaint-mask")
            with gr.Accordion("Several people: a person for each face (saved identity or photos)", open=False,
                              elem_id="inpaint-assignments-fold"):
                gr.Markdown("Pick a face (click it, or choose its number above), choose a saved identity or upload "
                            "photos for it, **Add**. With a list here, Inpaint paints every listed face (the photos "
                            "above are not used); faces not listed stay untouched. A face added again takes the "
                            "newest; **Remove** takes the picked face out of the list.")
                with gr.Row(equal_height=True):
                    assign_identity = gr.Dropdown(label="Identity for the picked face",
                                                  choices=identity_choices(ctx), value=None,
                                                  allow_custom_value=True, elem_id="inpaint-assign-identity",
                                                  scale=2)
                    assign_photos = gr.File(label="…or photos for this face", file_count="multiple",
                                            file_types=["image"], height=80, scale=3,
                                            elem_id="inpaint-assign-photos")
                with gr.Row(equal_height=True):
                    add_button = gr.Button("Add", size="sm", scale=0, min_width=70, elem_id="inpaint-assign-add")
                    remove_button = gr.Button("Remove", size="sm", scale=0, min_width=80,
                                              elem_id="inpaint-assign-remove")
                    clear_button = gr.Button("Clear", size="sm", scale=0, min_width=70,
                                             elem_id="inpaint-assign-clear")
                assignments = gr.Dataframe(value=assignment_table([]), headers=ASSIGNMENT_COLUMNS,
                                           label="Assignments (face = identity)", interactive=False,
                                           elem_id="inpaint-assignments")
            with gr.Accordion("Mask and recipe", open=False):
                recipe = gr.Radio(label="Recipe", choices=list(RECIPES), value=default("recipe"),
                                  info="release: the FACT release's two-stage ControlNet inpainting of the face (its "
                                       "own mask); single: one pass over the mask chosen above")
                with gr.Row():
                    dilate = gr.Slider(0, 128, value=0, step=1, label="Grow mask (px, 0 = automatic)")
                    feather = gr.Slider(0, 128, value=0, step=1, label="Feather (px, 0 = automatic)")
                with gr.Row():  # the release recipe's two ControlNets (the single recipe uses neither)
                    pose_controlnet = gr.Dropdown(label="Pose ControlNet (release)", value="",
                                                  choices=ctx.controlnet_choices("controlnet"))
                    canny_controlnet = gr.Dropdown(label="Canny ControlNet (release)", value="",
                                                   choices=ctx.controlnet_choices("canny_controlnet"))
        with gr.Column(scale=5):
            prompt = gr.Textbox(label="Prompt", value=default("prompt"), lines=2)
            with gr.Row():
                go = gr.Button("Inpaint", variant="primary", elem_id="inpaint-button")
                stop_button = gr.Button("Stop", variant="stop", scale=0)
            slider = gr.ImageSlider(label="Before / after", type="filepath", height=420, elem_id="inpaint-result")
            info = gr.Markdown()
            with gr.Accordion("Settings", open=False):
                negative = gr.Textbox(label="Negative prompt", value=default("negative_prompt"), lines=2)
                with gr.Row():
                    denoise = gr.Slider(0.05, 1.0, value=default("denoise"), step=0.05, label="Denoise",
                                        info="how much of the masked area is redrawn")
                    strength = gr.Slider(0.0, 1.5, value=default("face_strength"), step=0.05,
                                         label="Face strength")
                with gr.Row():
                    steps = gr.Slider(1, 100, value=default("steps"), step=1, label="Steps")
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=MAX_SEED)
                    randomize = gr.Checkbox(label="Random seed", value=True)
            download = gr.File(label="Result (PNG with its settings)", interactive=False)
    boxes = gr.State([])
    held_photos = gr.State({})  # FacePhotos: the photos uploaded per listed face, kept on the server

    def canvas(mode, has_template: bool):
        """Which of the canvas's three faces shows: uploader, numbered template, or mask editor."""
        painted = mode == "painted"
        return (gr.update(visible=not has_template), gr.update(visible=has_template and not painted),
                gr.update(visible=has_template and painted), gr.update(visible=has_template))

    # preprocess=False: the template, the painted layers and every number are checked by the studio itself
    # (`ctx.uploaded_file` + `load_image`, `checked`), so a broken file is one sentence, not gradio's dump.
    uploaded = template.upload(show_faces, template, [numbered, face_index, editor, boxes], api_name="template_faces",
                               concurrency_id=GPU, preprocess=False)
    uploaded.success(lambda mode: canvas(mode, True), mask_mode, [template, numbered, editor, change],
                     api_visibility="private", queue=False).then(
        lambda n: f"Face **0** of {len(n)} will be replaced (click another to change)." if n else "", boxes, picked,
        api_visibility="private", queue=False)
    numbered.select(pick_face, [template, boxes], [face_index, numbered, picked], api_visibility="private",
                    queue=False, preprocess=False)
    face_index.input(redraw, [template, boxes, face_index], [numbered, picked], api_visibility="private", queue=False,
                     preprocess=False)
    mask_mode.change(lambda mode, b: canvas(mode, bool(b)), [mask_mode, boxes], [template, numbered, editor, change],
                     api_visibility="private", queue=False)
    change.click(lambda: (gr.update(value=None, visible=True), gr.update(visible=False), gr.update(visible=False),
                          gr.update(visible=False), [], ""), None,
                 [template, numbered, editor, change, boxes, picked], api_visibility="private", queue=False)
    @user_errors
    def add_assignment(current, face, name, files, held, request: gr.Request = None):
        """"face N = identity NAME" or "face N = K uploaded photos" into the list; the one-pass recipe for several
        people (still changeable). Each upload is opened by the studio's loader first (bombs, broken files)."""
        names = identity_choices(ctx, ctx.workspace(request))
        files = uploaded_paths(ctx, files, "photo")
        pairs = added_assignment(current, face, name, names, len(files))  # the count is checked before any is opened
        paths = [ctx.uploaded_image(path, "photo for this face") for path in files]
        held = kept_photos(held, pairs)
        if paths:
            held[checked(InpaintRequest, "face_index", face)] = [str(path) for path in paths]
        return assignment_table(pairs), "single", held, None

    @user_errors
    def remove_assignment(current, face, held):
        pairs = removed_assignment(current, face)
        return assignment_table(pairs), kept_photos(held, pairs)

    def assign_identity_list(request: gr.Request = None):
        return gr.update(choices=identity_choices(ctx, ctx.workspace(request)))

    add_button.click(add_assignment, [assignments, face_index, assign_identity, assign_photos, held_photos],
                     [assignments, recipe, held_photos, assign_photos], api_name="assign_face", queue=False,
                     preprocess=False)
    remove_button.click(remove_assignment, [assignments, face_index, held_photos], [assignments, held_photos],
                        api_visibility="private", queue=False, preprocess=False)
    clear_button.click(lambda: (assignment_table([]), {}), None, [assignments, held_photos],
                       api_visibility="private", queue=False)
    assign_identity.focus(assign_identity_list, None, assign_identity, api_visibility="private")
    # `assignments` comes last, so older positional calls of /inpaint keep their meaning.
    go.click(inpaint, [identity, photos, template, face_index, mask_mode, editor, dilate, feather, prompt, negative,
                       denoise, strength, steps, seed, randomize, recipe, assignments, pose_controlnet,
                       canny_controlnet, held_photos],
             [slider, seed, info, download],
             api_name="inpaint", concurrency_id=GPU, preprocess=False)
    def stop(request: gr.Request = None):
        stops.stop(session_of(request))

    stop_button.click(stop, None, None, queue=False, api_visibility="private")
    return identity
