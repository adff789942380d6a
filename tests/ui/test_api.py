"""Every endpoint of the studio through `gradio_client`, against the studio running over the tiny models.

These are the calls a script (or the page) makes: they must give the documented outputs, save what they say they
save, and turn bad input into one clear sentence.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from facestudio.jobs import RunState
from tests.ui.conftest import wait_until

GENERATE_DEFAULTS = dict(identity=None, photos=None, prompt="a portrait photo", negative_prompt="blurry",
                         face_strength=0.5, face_delay_steps=0, face_cfg=True, steps=3, cfg=7.0,
                         scheduler="DPM++ 2M Karras", seed=5, random_seed=False, size="256x256", num_images=1,
                         base_model=None, adapter=None, lora="", lora_scale=0.8, pose=None, pose_strength=1.0)


def generate_args(studio, **overrides):
    args = dict(GENERATE_DEFAULTS, base_model=str(studio.tiny.base), adapter=str(studio.tiny.adapter))
    args.update(overrides)
    return args


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def documented_endpoints() -> set[str]:
    """The endpoints the README's API table lists (`/name` in its first column)."""
    import re

    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| endpoint | does |"):]
    table = table[:table.index("\n\n")]
    return {name for row in table.splitlines()[2:] for name in re.findall(r"`(/[a-z_]+)`", row.split("|")[1])}


def test_the_api_offers_exactly_the_documented_endpoints(client):
    documented = documented_endpoints()
    assert len(documented) >= 16
    assert set(client.view_api(return_format="dict", print_info=False)["named_endpoints"]) == documented


def test_analyze_shows_faces_crops_masks_and_warnings(client, photo):
    overlays, crops, masks, summary, report, used, matrix, regions = client.predict(
        [photo("obama.jpg"), photo("biden.jpg"), photo("astronaut.png")], "", api_name="/analyze")
    assert len(overlays) == 3 and len(crops) == 3 and len(masks) == 3 and len(regions) == 3
    # who matches whom: each photo with itself, and Biden with neither
    names = ["0: obama.jpg", "1: biden.jpg", "2: astronaut.png"]
    assert matrix["headers"] == ["photo", *names] and [row[0] for row in matrix["data"]] == names
    assert all(matrix["data"][i][i + 1] == "1.00 ✓" for i in range(3))
    assert matrix["data"][0][2].endswith("✗") and matrix["data"][1][1].endswith("✗")
    assert Image.open(crops[0]["image"]).size == (112, 112)
    assert "3 of 3 photo(s) usable" in summary
    assert "biden.jpg looks like a different person" in summary
    assert "astronaut.png: the face is small" in summary
    assert used == "0, 0, 0"
    assert [p["faces"] for p in report["photos"]] == [1, 1, 1]


def test_analyze_refuses_a_face_number_that_does_not_exist(client, photo):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"obama.jpg has 1 face\(s\); face 3 does not exist"):
        client.predict([photo("obama.jpg")], "3", api_name="/analyze")


def test_a_saved_identity_generates_and_shows_in_the_list(client, photo, studio):
    status, saved = client.predict([photo("obama.jpg"), photo("obama2.jpg")], "", "Test Person", False,
                                   "a man, 50-year-old", api_name="/save_identity")
    assert "Saved **Test Person** with 2 photo(s), subject words “a man, 50-year-old”" in status
    assert studio.ctx.identities.get("Test Person").subject == "a man, 50-year-old"
    assert ["Test Person", "Test Person"] in saved["choices"]
    assert (studio.home / "identities" / "test-person" / "identity.json").is_file()

    gallery, seed, _info, *_ = client.predict(**generate_args(studio, identity="Test Person"), api_name="/generate")
    assert len(gallery) == 1 and seed["value"] == 5

    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="An identity named 'Test Person' exists"):
        client.predict([photo("obama.jpg")], "", "Test Person", False, api_name="/save_identity")


def test_generate_saves_pngs_with_their_settings_and_identity_scores(client, photo, studio):
    from facestudio.engine import read_png_record

    args = generate_args(studio, photos=[photo("obama.jpg")], num_images=2)
    gallery, _seed, info, *_ = client.predict(**args, api_name="/generate")
    assert [item["caption"].split(" · ")[0] for item in gallery] == ["seed 5", "seed 6"]
    assert all("identity" in item["caption"] or "no face" in item["caption"] for item in gallery)
    assert "Seed used: **5**" in info
    saved = sorted((studio.home / "outputs").rglob("generate-*-5.png"))
    assert saved, "the result is kept in FACESTUDIO_HOME/outputs"
    record = read_png_record(gallery[0]["image"])  # the download carries the metadata
    assert record["seed"] == 5 and record["request"]["prompt"] == "a portrait photo"

    again, *_ = client.predict(**dict(args, num_images=1), api_name="/generate")
    assert np.array_equal(pixels(again[0]["image"]), pixels(gallery[0]["image"]))


def test_compare_strengths_renders_one_seed_at_each_strength(client, photo, studio):
    gallery, _seed, _info, *_ = client.predict("0, 0.8", **generate_args(studio, photos=[photo("obama.jpg")]),
                                             api_name="/compare_strengths")
    captions = [item["caption"] for item in gallery]
    assert [c.split(" · ")[0] for c in captions] == ["strength 0", "strength 0.8"]
    assert all("seed 5" in c for c in captions)
    assert not np.array_equal(pixels(gallery[0]["image"]), pixels(gallery[1]["image"]))

    plain, *_ = client.predict(**generate_args(studio, photos=[photo("obama.jpg")], face_strength=0.0),
                               api_name="/generate")
    assert np.array_equal(pixels(plain[0]["image"]), pixels(gallery[0]["image"]))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"photos": None}, "Choose a saved identity or upload photos of the person"),
    ({"size": "300x300"}, r"Size \(width\) must be a multiple of 8"),
    ({"photos": None, "identity": "nobody here"}, "There is no saved identity 'nobody here'"),
    ({"adapter": "/etc/passwd"}, "is not one of the offered adapter choices"),
    ({"photos": "no-face"}, "No face found in"),
])
def test_bad_requests_are_one_clear_sentence(client, studio, photo, tmp_path, overrides, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    overrides = dict({"photos": [photo("obama.jpg")]}, **overrides)
    if overrides["photos"] == "no-face":
        Image.new("RGB", (256, 256), (90, 120, 150)).save(tmp_path / "wall.png")
        overrides["photos"] = [handle_file(str(tmp_path / "wall.png"))]
    loads = dict(studio.ctx.manager.load_count) if studio.ctx.engine_started else {}
    with pytest.raises(AppError, match=message) as caught:
        client.predict(**generate_args(studio, **overrides), api_name="/generate")
    assert "Traceback" not in str(caught.value) and "`" not in str(caught.value)
    # Refused before any model was loaded (the analyzer may run: a photo without a face is found by it).
    after = dict(studio.ctx.manager.load_count) if studio.ctx.engine_started else {}
    assert {k: v for k, v in after.items() if k != "face_analyzer"} == \
        {k: v for k, v in loads.items() if k != "face_analyzer"}


def test_a_lora_in_the_studio_folder_is_offered_and_changes_the_image(client, photo, studio):
    (studio.home / "loras").mkdir(exist_ok=True)
    lora = studio.home / "loras" / "style.safetensors"
    shutil.copy(studio.tiny.lora, lora)
    args = generate_args(studio, photos=[photo("obama.jpg")])
    plain, *_ = client.predict(**args, api_name="/generate")
    styled, *_ = client.predict(**dict(args, lora=str(lora), lora_scale=1.0), api_name="/generate")
    assert not np.array_equal(pixels(plain[0]["image"]), pixels(styled[0]["image"]))


def test_settings_come_back_from_a_png(client, photo, studio):
    from gradio_client import handle_file

    gallery, *_ = client.predict(**generate_args(studio, photos=[photo("obama.jpg")], prompt="a knight", seed=11),
                                 api_name="/generate")
    settings = client.predict(handle_file(gallery[0]["image"]), api_name="/reuse_png")
    assert settings[0] == "a knight" and settings[8] == 11 and settings[10]["value"] == "256x256"


def test_inpaint_with_the_automatic_and_a_painted_mask(client, photo, studio, tmp_path):
    from gradio_client import handle_file

    template = studio.home / "template.png"
    Image.open(photo("biden.jpg")["path"]).convert("RGB").save(template)
    numbered, faces, _editor = client.predict(handle_file(str(template)), api_name="/template_faces")
    assert faces["choices"][0][1] == 0 and Image.open(numbered).size == Image.open(template).size

    common = dict(identity=None, photos=[photo("obama.jpg")], template=handle_file(str(template)), face_index=0,
                  dilate=0, feather=0, prompt="a photo", negative="blurry", denoise=0.6, strength=0.55, steps=3,
                  seed=1, randomize=False, recipe="single")
    (_before, after), seed, _info, _download = client.predict(mask_mode="face", editor=None, **common,
                                                           api_name="/inpaint")
    original, result = pixels(template), pixels(after)
    assert result.shape == original.shape and seed == 1
    assert not np.array_equal(original, result)

    width, height = Image.open(template).size
    layer = np.zeros((height, width, 4), np.uint8)
    layer[10:60, 10:60] = 255  # a painted square in the corner, away from the face
    painted = tmp_path / "layer.png"
    Image.fromarray(layer).save(painted)
    editor_value = {"background": handle_file(str(template)), "layers": [handle_file(str(painted))],
                    "composite": None}
    (_, after), *_ = client.predict(mask_mode="painted", editor=editor_value, **common, api_name="/inpaint")
    changed = np.abs(pixels(after) - original).max(axis=2) > 0
    assert changed[10:60, 10:60].any() and not changed[80:, 80:].any()


def test_training_from_uploaded_photos_cancel_and_resume(client, photo, studio, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="outside the studio's folder"):
        client.predict(files=None, folder="/etc", name="x", base_model=str(studio.tiny.base), init="default",
                       steps=4, lr=1e-3, fair_weight=0.01, drop_prob=0.05, shuffle_prob=0.5, curriculum=True,
                       resolution=64, batch_size=2, checkpoint_every=2, sample_every=0, api_name="/train_start")

    # A photo without a face: the job's photo check rejects it (the click's one-person check only compares faces;
    # a photo of another person is refused before queueing, see test_privacy).
    wall = tmp_path / "wall.png"
    Image.new("RGB", (256, 256), (90, 120, 150)).save(wall)
    message, job, _table = client.predict(
        files=[photo("obama.jpg"), photo("obama2.jpg"), handle_file(str(wall))], folder="", name="Alex",
        base_model=str(studio.tiny.base), init=str(studio.tiny.adapter), steps=12, lr=1e-3, fair_weight=0.01,
        drop_prob=0.05, shuffle_prob=0.5, curriculum=True, resolution=64, batch_size=2, checkpoint_every=2,
        sample_every=0, api_name="/train_start")
    job_id = job["value"]
    assert "Queued job" in message and job_id in message

    def status():
        return client.predict(job_id, api_name="/train_status")[1]["status"]

    first = status()  # the click returned before any photo was looked at
    assert first["stage"] == "preparing" and first["state"] in (RunState.QUEUED, RunState.RUNNING)
    assert first["step"] < 3
    wait_until(lambda: (s := status())["stage"] == "training" and s["step"] >= 2, 240, "two training steps")
    text, _data, _plot, _samples, report, _jobs, action = client.predict(job_id, api_name="/train_status")
    assert action.startswith(f"Job {job_id} is running. Cancel stops it")
    assert "12 steps · 64 px · batch 2 · learning rate 0.001 · warm-up 1 step(s) (capped to 10% of the steps; 50 asked)" \
        in text
    kept = {row[0].split("_", 1)[1]: row[1] for row in report["data"]}
    assert kept == {"obama.jpg": "kept", "obama2.jpg": "kept", "wall.png": "rejected"}
    assert "Photos: 2 kept, 1 rejected." in text
    assert client.predict(job_id, api_name="/train_cancel").startswith(f"Cancelling job {job_id}")
    stopped = wait_until(lambda: (s := status())["state"] == RunState.CANCELLED and s, 120, "the cancel")
    assert stopped["checkpoint_step"] >= 2
    *_, action = client.predict(job_id, api_name="/train_status")  # the message follows the state: never stale
    assert action == f"Job {job_id} is cancelled. Resume continues it from step {stopped['checkpoint_step']}."

    assert "queued again" in client.predict(job_id, api_name="/train_resume")
    _text, data, _plot, _samples, _report, jobs, _action = client.predict(job_id, api_name="/train_status")
    assert data["id"] == job_id and any(row[0] == job_id for row in jobs["data"])
    done = wait_until(lambda: (s := status())["state"] in (RunState.DONE, RunState.FAILED) and s, 300,
                      "the resumed job")
    assert done["state"] == RunState.DONE, done["error"]
    text, data, plot, _samples, _report, jobs, action = client.predict(job_id, api_name="/train_status")
    assert action == f"Job {job_id} is done." and "ended " in text
    assert [row[0] for row in plot["data"]] == list(range(1, 13))  # every step once, across the resume
    assert data["adapter"] and "Generate → FACT adapter" in text
    log = (studio.home / "jobs" / job_id / "train.log").read_text()
    assert log.count("Prepared 2 of 3 photo(s)") == 1  # the resumed job did not prepare again

    trained = data["adapter"]  # offered in Generate without a restart
    assert trained in {value for _, value in studio.ctx.adapter_choices()}
    gallery, *_ = client.predict(**generate_args(studio, photos=[photo("obama.jpg")], adapter=trained),
                                 api_name="/generate")
    assert len(gallery) == 1


def test_models_tab_reports_states_and_unloads(client, photo, studio):
    client.predict(**generate_args(studio, photos=[photo("obama.jpg")]), api_name="/generate")
    table, machine = client.predict(api_name="/models_status")
    states = {row[0]: row[2] for row in table["data"]}
    assert states["majicmix"] == "not downloaded" and states["base"] == "loaded"
    assert "**Loaded:** base_model:" in machine and "**RAM:**" in machine and "torch" in machine
    message, table, machine = client.predict("all", api_name="/unload")
    assert "Unloaded" in message and "**Loaded:** nothing" in machine


def test_training_starts_from_a_saved_identity_of_one_person(client, photo, studio):
    from gradio_client.exceptions import AppError

    settings = dict(files=None, folder="", name="", base_model=str(studio.tiny.base), init="default", steps=40,
                    lr=1e-3, fair_weight=0.01, drop_prob=0.05, shuffle_prob=0.5, curriculum=True, resolution=64,
                    batch_size=1, checkpoint_every=20, sample_every=0, warmup_steps=50)
    client.predict([photo("obama.jpg"), photo("obama2.jpg")], "", "Saved Alex", True, "", api_name="/save_identity")
    message, job, _table = client.predict(**settings, identity="Saved Alex", api_name="/train_start")
    job_id = job["value"]
    assert "Queued job" in message and job_id.endswith("saved-alex")
    queued = studio.ctx.jobs.get(job_id)
    assert queued.name == "Saved Alex"  # the identity's name when no name is typed
    assert sorted(p.name for p in next(queued.folder.photos_dir.iterdir()).iterdir()) == \
        ["001_photo-01.png", "002_photo-02.png"]
    text, *_ = client.predict(job_id, api_name="/train_status")
    assert "warm-up 4 step(s) (capped to 10% of the steps; 50 asked)" in text
    assert client.predict(job_id, api_name="/train_cancel")
    wait_until(lambda: studio.ctx.jobs.effective_status(queued).state in (RunState.CANCELLED, RunState.DONE), 120,
               "the cancel")

    # An identity saved from photos of two people (saving warns, it does not refuse) is refused like uploads are.
    client.predict([photo("obama.jpg"), photo("biden.jpg")], "", "Two People", True, "", api_name="/save_identity")
    before = len(studio.ctx.jobs.list())
    with pytest.raises(AppError, match=r"Train on photos of one person: .*looks like a different person"):
        client.predict(**settings, identity="Two People", api_name="/train_start")
    assert len(studio.ctx.jobs.list()) == before


def test_models_tab_offers_local_files_and_explains_offline_downloads(client, studio):
    from gradio_client.exceptions import AppError

    local = studio.home / "models" / "local"
    local.mkdir(parents=True, exist_ok=True)
    shutil.copy(studio.tiny.adapter, local / "my-adapter.safetensors")
    shutil.copytree(studio.tiny.base, local / "my-base", dirs_exist_ok=True)
    table, machine = client.predict(api_name="/models_status")
    rows = {row[0]: row for row in table["data"]}
    assert rows["my-adapter.safetensors"][1:3] == ["fact_adapter", "local file"]
    assert rows["my-base"][1:3] == ["base_model", "local file"] and rows["my-base"][4] == "models/local"
    assert "**Started with:** base model" in machine and str(studio.home) not in machine
    # offered in the model lists without a restart, by their path inside FACESTUDIO_HOME
    assert ("local: my-base", "models/local/my-base") in studio.ctx.base_model_choices()
    assert ("local: my-adapter.safetensors", "models/local/my-adapter.safetensors") in studio.ctx.adapter_choices()

    with pytest.raises(AppError, match=r"Nothing was downloaded: downloads are off .*FACESTUDIO_HOME/models/local/") \
            as caught:
        client.predict(api_name="/download_defaults")
    assert "facestudio download" not in str(caught.value)  # no command that needs the network it does not have


def test_generate_best_of_keeps_the_best_and_shows_the_ranking(client, photo, studio):
    from facestudio.engine import read_png_record

    gallery, _seed, info, *_ = client.predict(**generate_args(studio, photos=[photo("obama.jpg")], best_of=2, keep=1,
                                                              face_fix="off"), api_name="/generate")
    assert len(gallery) == 1
    candidates = read_png_record(gallery[0]["image"])["candidates"]
    assert sorted(c["seed"] for c in candidates) == [5, 6] and sum(c["kept"] for c in candidates) == 1
    assert "**Best of 2**" in info and "seed 5" in info and "seed 6" in info and "· kept" in info


@pytest.mark.parametrize(("overrides", "message"), [
    ({"best_of": 99}, r"^Best of N must be a whole number from 1 to 16; got 99\.$"),
    ({"face_fix": "sometimes"}, r"^Face fix must be one of auto, on, off; got 'sometimes'\.$"),
    ({"best_of": 2, "keep": 3}, r"^Keep \(3\) must be at most Best of N \(2\)\.$"),
    ({"best_of": 2, "num_images": 2}, r"^Best of N makes its own 2 candidates: set Images to 1 \(it is 2\)"),
])
def test_identity_tool_settings_out_of_range_are_one_sentence(client, photo, studio, overrides, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(**generate_args(studio, photos=[photo("obama.jpg")], **overrides), api_name="/generate")


def test_inpaint_paints_several_people_and_keeps_the_faces_not_listed(client, photo, studio, faces_dir):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from facestudio.engine import read_png_record
    from facestudio.face import load_image
    from tests.engine.test_identity_tools import group_photo

    template = studio.home / "group.png"
    group_photo(faces_dir, (900, 500)).save(template)
    client.predict([photo("obama2.jpg")], "", "Assign A", True, "", api_name="/save_identity")
    client.predict([photo("biden.jpg")], "", "Assign B", True, "", api_name="/save_identity")
    common = dict(identity=None, photos=None, template=handle_file(str(template)), face_index=0, mask_mode="face",
                  editor=None, dilate=0, feather=0, prompt="a photo", negative="blurry", denoise=0.75,
                  strength=0.55, steps=2, seed=3, randomize=False, recipe="single")
    table = {"headers": ["face", "identity"], "data": [[0, "Assign A"], [2, "Assign B"]], "metadata": None}
    (_before, after), _seed, info, download = client.predict(**common, assignments=table, api_name="/inpaint")
    assert "Painted: face 0 = Assign A, face 2 = Assign B" in info
    record = read_png_record(download)
    assert [(a["face_index"], a["identity"]) for a in record["request"]["assignments"]] == \
        [(0, "Assign A"), (2, "Assign B")]
    original, result = pixels(template), pixels(after)
    changed = np.abs(result - original).max(axis=2) > 0
    faces = studio.ctx.manager.analyzer().analyze(load_image(template, name="group.png")).faces
    for index in (0, 2):  # the assigned faces change, the one not listed stays bit-identical
        x0, y0, x1, y1 = (int(v) for v in faces[index].bbox)
        assert changed[y0:y1, x0:x1].any()
    x0, y0, x1, y1 = (int(v) for v in faces[1].bbox)
    assert not changed[y0:y1, x0:x1].any()

    with pytest.raises(AppError, match="There is no saved identity 'nobody'"):
        client.predict(**common, assignments=dict(table, data=[[1, "nobody"]]), api_name="/inpaint")


def test_the_assignments_list_adds_replaces_and_refuses_in_one_sentence():
    from facestudio.errors import InvalidRequestError
    from facestudio.ui.inpaint_tab import added_assignment, assignment_rows, assignment_table

    names = ["Alex", "Sam"]
    pairs = added_assignment(None, 2, "Sam", names)
    table = {"headers": ["face", "identity"], "data": assignment_table(pairs).values.tolist()}
    assert added_assignment(table, 0, "Alex", names) == [(0, "Alex"), (2, "Sam")]
    assert added_assignment(table, 2, "Alex", names) == [(2, "Alex")]  # a face listed again changes its person
    assert assignment_rows({"data": [["", ""], [1, " Sam "]]}) == [(1, "Sam")]  # blank rows are left out
    for current, face, name, message in ((None, None, "Alex", "Pick a face first"),
                                         (None, 0, "Ghost", "Choose one of the saved identities"),
                                         (None, -1, "Alex", "must be a whole number"),
                                         ({"data": [[1, ""]]}, 0, "Alex", "names no saved identity")):
        with pytest.raises(InvalidRequestError, match=message):
            added_assignment(current, face, name, names)
