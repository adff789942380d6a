"""The identity tools in the page (issue 16), through `gradio_client` against the studio over the tiny models:
"Reuse settings" fills the identity tools' controls too, several people from photos uploaded per face, and
compare strengths with the CLIP score, its plot and the recommended strength."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.ui.test_api import generate_args, pixels


def test_reuse_fills_every_control_from_a_record_with_non_default_values(client, photo, studio):
    from gradio_client import handle_file

    from facestudio.ui.generate_tab import REUSED_CONTROLS

    (studio.home / "loras").mkdir(exist_ok=True)
    shutil.copy(studio.tiny.lora, studio.home / "loras" / "reused.safetensors")
    chosen = dict(prompt="a reused knight", negative_prompt="grainy", face_strength=0.7, face_delay_steps=1,
                  face_cfg=False, steps=2, cfg=5.5, scheduler="Euler", seed=21, random_seed=False, size="256x256",
                  lora="loras/reused.safetensors", lora_scale=0.6, pose_strength=0.7, face_fix="on",
                  face_fix_denoise=0.3, best_of=2, keep=2)
    gallery, *_ = client.predict(**generate_args(studio, photos=[photo("obama.jpg")], **chosen),
                                 api_name="/generate")
    assert len(gallery) == 2
    # The second-best image: its own seed may be 22, but the run that made it started at 21.
    values = client.predict(handle_file(gallery[1]["image"]), api_name="/reuse_png")
    reused = dict(zip(REUSED_CONTROLS, values, strict=True))
    assert reused.pop("size")["value"] == "256x256"
    assert reused.pop("num_images") == 1  # best of N takes one image per candidate
    for name in ("base_model", "adapter"):  # the tiny models lie outside FACESTUDIO_HOME: not offered by name
        reused.pop(name)
    expected = {name: value for name, value in chosen.items() if name in reused}
    assert reused == expected, "every control gets the record's value"
    assert set(reused) | {"size", "num_images", "base_model", "adapter"} == set(REUSED_CONTROLS)


def test_photos_uploaded_for_two_faces_paint_both_and_keep_the_face_not_listed(client, photo, studio, faces_dir):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from facestudio.engine import read_png_record
    from facestudio.face import load_image
    from tests.engine.test_identity_tools import group_photo

    template = studio.home / "uploads-group.png"
    group_photo(faces_dir, (900, 500)).save(template)
    empty = {"headers": ["face", "identity"], "data": [], "metadata": None}
    # The page's Add: the photos stay on the server, the list says how many (no path of the machine).
    table, recipe, _photos = client.predict(empty, 2, None, [photo("biden.jpg")], api_name="/assign_face")
    table, recipe, _photos = client.predict(table, 0, None, [photo("obama2.jpg"), photo("obama.jpg")],
                                            api_name="/assign_face")
    assert table["data"] == [[0, "2 uploaded photos"], [2, "1 uploaded photo"]] and recipe == "single"
    assert str(studio.home) not in str(table) and "gradio" not in str(table)
    common = dict(identity=None, photos=None, template=handle_file(str(template)), face_index=0, mask_mode="face",
                  editor=None, dilate=0, feather=0, prompt="a photo", negative="blurry", denoise=0.75,
                  strength=0.55, steps=2, seed=3, randomize=False, recipe="single")
    (_before, after), _seed, info, download = client.predict(**common, assignments=table, api_name="/inpaint")
    assert "Painted: face 0 = 2 uploaded photos, face 2 = 1 uploaded photo" in info
    assigned = read_png_record(download)["request"]["assignments"]
    assert [(a["face_index"], a["identity"], [p.rsplit("/", 1)[-1] for p in a["faces"]]) for a in assigned] == \
        [(0, "", ["obama2.jpg", "obama.jpg"]), (2, "", ["biden.jpg"])]
    original, result = pixels(template), pixels(after)
    changed = np.abs(result - original).max(axis=2) > 0
    faces = studio.ctx.manager.analyzer().analyze(load_image(template, name="group.png")).faces
    for index in (0, 2):  # both faces with uploaded photos change, the one not listed stays bit-identical
        x0, y0, x1, y1 = (int(v) for v in faces[index].bbox)
        assert changed[y0:y1, x0:x1].any()
    x0, y0, x1, y1 = (int(v) for v in faces[1].bbox)
    assert not changed[y0:y1, x0:x1].any()

    # A broken upload is refused by the studio's loader at Add, in one sentence naming it.
    corrupt = studio.home / "corrupt-face.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(AppError, match=r"corrupt-face\.png") as caught:
        client.predict(table, 1, None, [handle_file(str(corrupt))], api_name="/assign_face")
    assert "Traceback" not in str(caught.value) and str(studio.home) not in str(caught.value)
    from PIL import Image

    bomb = studio.home / "bomb-face.png"  # 81 megapixels in 10 KB: refused from its header, before decoding
    Image.new("1", (9000, 9000)).save(bomb)
    with pytest.raises(AppError, match=r"bomb-face\.png is 9000x9000 = 81 megapixels.*decompression bomb"):
        client.predict(table, 1, None, [handle_file(str(bomb))], api_name="/assign_face")

    # Another session (a reloaded page) has no photos for a list that says so: one sentence, not a crash.
    with pytest.raises(AppError, match="photos uploaded for face 0 are not"):
        studio.client().predict(**common, assignments=table, api_name="/inpaint")


def test_the_assignments_list_mixes_identities_and_uploads_and_stays_editable():


    from facestudio.errors import InvalidRequestError
    from facestudio.ui.inpaint_tab import added_assignment, kept_photos, removed_assignment

    names = ["Ann"]
    pairs = added_assignment(None, 2, None, names, uploaded=3)
    pairs = added_assignment(pairs, 1, "Ann", names)
    assert pairs == [(1, "Ann"), (2, "3 uploaded photos")]
    held = kept_photos({2: ["a.png", "b.png", "c.png"]}, pairs)
    assert held == {2: ["a.png", "b.png", "c.png"]}
    pairs = added_assignment(pairs, 2, "Ann", names)  # a face added again takes the newest: its photos drop
    assert pairs == [(1, "Ann"), (2, "Ann")] and kept_photos(held, pairs) == {}
    assert added_assignment(pairs, 1, "Ann", names, uploaded=1) == [(1, "1 uploaded photo"), (2, "Ann")]
    assert removed_assignment(pairs, 1) == [(2, "Ann")]
    with pytest.raises(InvalidRequestError, match="Face 5 is not in the list"):
        removed_assignment(pairs, 5)
    with pytest.raises(InvalidRequestError, match="or upload photos for it"):
        added_assignment(pairs, 0, None, names)
    with pytest.raises(InvalidRequestError, match="at most 8 photos"):
        added_assignment(pairs, 0, None, names, uploaded=9)


def test_compare_without_a_clip_model_says_how_to_get_it_and_downloads_nothing(client, photo, studio):
    from facestudio.ui.generate_tab import COMPARE_COLUMNS, NO_CLIP

    gallery, _seed, info, table, lines, scatter = client.predict(
        "0, 0.8", **generate_args(studio, photos=[photo("obama.jpg")]), api_name="/compare_strengths")
    assert table["headers"] == COMPARE_COLUMNS
    assert [row[0] for row in table["data"]] == [0, 0.8] and {row[3] for row in table["data"]} == {NO_CLIP}
    assert "No CLIP score: the CLIP model clip-vit-l14" in info and "Download the CLIP model" in info
    assert not any(name.startswith("clip") for name in studio.ctx.manager.load_count)
    assert all("CLIP" not in item["caption"] for item in gallery)
    assert lines["visible"] is True and scatter["visible"] is False  # identity against strength instead

    # Asked to download it, an offline studio says so in one sentence, before any image is made.
    from gradio_client.exceptions import AppError

    made = len(list((studio.home / "outputs").rglob("*.png")))
    with pytest.raises(AppError, match="clip-vit-l14") as caught:
        client.predict("0, 0.8", **generate_args(studio, photos=[photo("obama.jpg")]), download_clip=True,
                       api_name="/compare_strengths")
    assert "Traceback" not in str(caught.value) and str(studio.home) not in str(caught.value)
    assert len(list((studio.home / "outputs").rglob("*.png"))) == made


def test_compare_with_a_clip_model_shows_clip_scores_the_plot_and_a_recommendation(client, photo, studio,
                                                                                    monkeypatch, tmp_path):
    import dataclasses

    from PIL import Image

    from facestudio.engine.clip_score import ClipScorer, clip_scores
    from tests.engine.tiny_models import write_tiny_clip

    tiny_clip = write_tiny_clip(tmp_path / "clip")  # as if the studio was started with --clip-model FOLDER
    monkeypatch.setattr(studio.ctx, "options", dataclasses.replace(studio.ctx.options, clip_model=str(tiny_clip)))
    gallery, _seed, info, table, lines, scatter = client.predict(
        "0, 0.8", **generate_args(studio, photos=[photo("obama.jpg")]), api_name="/compare_strengths")
    scores = [row[3] for row in table["data"]]
    # The CLIP column is transformers' CLIP score of each image shown against the prompt.
    expected = clip_scores([Image.open(item["image"]) for item in gallery], "a portrait photo",
                           ClipScorer.from_pretrained(tiny_clip))
    assert scores == pytest.approx(expected, abs=0.01)
    assert all(" · CLIP " in item["caption"] for item in gallery)
    assert "Recommended strength: " in info or "No recommended strength: " in info
    assert "No CLIP score" not in info
    # The plot: identity against CLIP score, one point per strength whose image has a face.
    assert lines["visible"] is False and scatter["visible"] is True
    plotted = scatter["value"]
    assert plotted["columns"] == ["CLIP score", "identity", "strength"]
    with_face = [row for row in table["data"] if row[1] != "no face found"]
    assert [(row[0], row[1]) for row in plotted["data"]] == [(row[3], row[1]) for row in with_face]


def test_the_compare_table_plot_and_recommendation_read_the_engines_comparison():
    from facestudio.engine.likeness import StrengthComparison, StrengthPoint, recommend_strength
    from facestudio.ui.generate_tab import comparison_table, likeness_points, recommendation_text

    points = (StrengthPoint(0.0, 0.21, False, 31.5), StrengthPoint(0.5, 0.64, True, 27.25),
              StrengthPoint(1.0, None, False, 20.0))
    recommended, reason = recommend_strength(points, 0.6)
    comparison = StrengthComparison("a knight", 5, 0.6, points, recommended, reason, "clip")
    assert comparison_table([], comparison).values.tolist() == [
        [0.0, 0.21, "no", 31.5], [0.5, 0.64, "yes", 27.25], [1.0, "no face found", "no", 20.0]]
    plotted = likeness_points(comparison)
    assert plotted.values.tolist() == [[31.5, 0.21, "s=0"], [27.25, 0.64, "s=0.5"]]
    assert {str(plotted.dtypes[name]) for name in ("identity", "CLIP score")} == {"float64"}  # a numeric axis
    assert recommendation_text(comparison) == ("**Recommended strength: 0.5** (the lowest strength whose identity "
                                               "score passes the same-person threshold 0.6).")
    none = StrengthComparison("a knight", 5, 0.6, points[2:], None, "no face was found in any image")
    assert recommendation_text(none) == "No recommended strength: no face was found in any image."


def test_the_studio_takes_its_clip_model_from_a_flag_or_the_environment(tmp_path, monkeypatch):
    import app
    from facestudio.config import StudioSettings

    monkeypatch.setenv("FACESTUDIO_CLIP_MODEL", "from-env")
    assert app.parse_args([]).clip_model == "from-env"
    args = app.parse_args(["--no-jobs", "--clip-model", "my-clip"])
    ctx, _ = app.create_studio(args, StudioSettings(home=tmp_path, offline=True))
    assert ctx.options.clip_model == "my-clip"
