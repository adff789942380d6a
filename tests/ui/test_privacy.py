"""The studio as an attacker meets it (loopback, over the tiny models): only files handed out in a response are
served, no path of the machine is in an answer or the page, bad input is one sentence naming the control, and with
--auth the login page tells nothing and wrong passwords are throttled."""

from __future__ import annotations

import json
import math
import urllib.parse

import httpx
import pytest
from PIL import Image, PngImagePlugin

from tests.ui.test_api import generate_args


def fetch(studio, path) -> httpx.Response:
    return httpx.get(f"{studio.url}gradio_api/file={urllib.parse.quote(str(path))}", timeout=30)


def test_nothing_under_the_home_is_served(studio):
    secret = studio.home / "jobs" / "20260101-000000-x" / "checkpoints" / "step-1" / "optimizer.safetensors"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(b"secret")
    for path in (secret, studio.home / "identities", studio.home / "jobs"):
        assert fetch(studio, path).status_code in (403, 404)


def test_results_are_handed_out_under_unguessable_names_only(client, photo, studio):
    gallery, *_ = client.predict(**generate_args(studio, photos=[photo("obama.jpg")], seed=21), api_name="/generate")
    assert len(gallery) == 1
    kept = sorted((studio.home / "outputs").rglob("generate-*-21.png"))
    assert kept, "the result is still kept in FACESTUDIO_HOME/outputs"
    assert fetch(studio, kept[-1]).status_code == 403  # the kept file itself is not served
    assert fetch(studio, "/etc/passwd").status_code == 403


def _answers(client, studio) -> str:
    text = json.dumps(client.predict(api_name="/models_status"), default=str)
    jobs = studio.ctx.jobs.list()
    if jobs:
        text += json.dumps(client.predict(jobs[0].id, api_name="/train_status"), default=str)
    return text


def test_no_path_of_the_machine_in_answers_or_the_page(client, studio):
    home = str(studio.home.resolve())
    page = httpx.get(studio.url, timeout=30).text
    assert home not in page and str(studio.tiny.base) not in page
    info = httpx.get(f"{studio.url}gradio_api/info", timeout=30).text
    assert home not in info
    assert home not in _answers(client, studio)


def _refused(client, *args, api_name, **kwargs) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as caught:
        client.predict(*args, api_name=api_name, **kwargs)
    message = str(caught.value)
    assert "Something went wrong" not in message and "preprocess" not in message.lower(), message
    assert "Traceback" not in message and len(message) < 400, message
    return message


GENERATE_ORDER = ["identity", "photos", "prompt", "negative_prompt", "face_strength", "face_delay_steps", "face_cfg",
                  "steps", "cfg", "scheduler", "seed", "random_seed", "size", "num_images", "base_model", "adapter",
                  "lora", "lora_scale", "pose", "pose_strength", "face_fix", "face_fix_denoise", "best_of", "keep"]


def raw_call(studio, api_name: str, data: list) -> str:
    """One call over raw HTTP with raw JSON (NaN included, which gradio_client will not send); the error text."""
    started = httpx.post(f"{studio.url}gradio_api/call/{api_name}", content=json.dumps({"data": data}),
                         headers={"content-type": "application/json"}, timeout=30)
    assert started.status_code == 200, started.text
    event = started.json()["event_id"]
    stream = httpx.get(f"{studio.url}gradio_api/call/{api_name}/{event}", timeout=120).text
    assert "event: error" in stream, stream
    return stream


def uploaded(studio, path) -> dict:
    with open(path, "rb") as handle:
        answer = httpx.post(f"{studio.url}gradio_api/upload", files={"files": handle}, timeout=30)
    return {"path": answer.json()[0], "meta": {"_type": "gradio.FileData"}}


@pytest.mark.parametrize(("overrides", "control"), [
    ({"steps": math.nan}, "Steps"), ({"steps": "abc"}, "Steps"),
    ({"face_delay_steps": math.nan}, "Delayed face condition"), ({"seed": "abc"}, "Seed"), ({"seed": math.nan}, "Seed"),
    ({"cfg": math.inf}, "CFG"), ({"num_images": 2.5}, "Images"), ({"face_strength": "x"}, "Face strength"),
])
def test_bad_numbers_are_one_sentence_naming_the_control(photo, faces_dir, studio, overrides, control):
    args = generate_args(studio, photos=[uploaded(studio, faces_dir / "obama.jpg")], **overrides)
    message = raw_call(studio, "generate", [args.get(name) for name in GENERATE_ORDER])  # None: the default
    assert control in message and "Something went wrong" not in message and "preprocess" not in message.lower()
    assert str(studio.home) not in message


def test_broken_images_and_crafted_pngs_are_one_sentence(client, photo, studio, tmp_path):
    from gradio_client import handle_file

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for bad in (corrupt, empty):
        assert bad.name in _refused(client, handle_file(str(bad)), api_name="/template_faces")
    message = _refused(client, **generate_args(studio, photos=[photo("obama.jpg")], pose=handle_file(str(corrupt))),
                       api_name="/generate")
    assert "corrupt.png" in message

    info = PngImagePlugin.PngInfo()
    info.add_text("facestudio", "[" * 100_000 + "]" * 100_000)
    deep = tmp_path / "deep.png"
    Image.new("RGB", (8, 8)).save(deep, pnginfo=info)
    assert "nested deeper" in _refused(client, handle_file(str(deep)), api_name="/reuse_png")

    template = tmp_path / "template.png"
    Image.open(photo("biden.jpg")["path"]).convert("RGB").save(template)
    message = _refused(client, identity=None, photos=[photo("obama.jpg")], template=handle_file(str(template)),
                       face_index="abc", mask_mode="face", editor=None, dilate=0, feather=0, prompt="a photo",
                       negative="", denoise=0.6, strength=0.5, steps=1, seed=1, randomize=False, api_name="/inpaint")
    assert "Face to replace" in message


def test_echoed_values_are_clipped(client):
    message = _refused(client, "x" * 10_000, api_name="/download_model")
    assert "xxxxx" in message and len(message) < 200


@pytest.mark.parametrize(("setting", "value", "control"), [
    ("steps", 10**15, "Steps"), ("resolution", 1_000_000, "Resolution"), ("batch_size", 1_000_000, "Batch size"),
    ("steps", "NaN", "Steps"), ("resolution", "abc", "Resolution"), ("lr", "inf", "Learning rate"),
])
def test_training_settings_are_bounded_before_anything_is_queued(client, photo, studio, setting, value, control):
    before = len(studio.ctx.jobs.list())
    settings = dict(files=[photo("obama.jpg")], folder="", name="bounds", base_model=str(studio.tiny.base),
                    init="default", steps=4, lr=1e-3, fair_weight=0.01, drop_prob=0.05, shuffle_prob=0.5,
                    curriculum=True, resolution=64, batch_size=2, checkpoint_every=2, sample_every=0)
    settings[setting] = value
    assert control in _refused(client, **settings, api_name="/train_start")
    assert len(studio.ctx.jobs.list()) == before


def test_the_train_tab_refuses_photos_of_two_people_before_queueing(client, photo, studio):
    before = len(studio.ctx.jobs.list())
    message = _refused(client, files=[photo("obama.jpg"), photo("biden.jpg")], folder="", name="two",
                       base_model=str(studio.tiny.base), init="default", steps=4, lr=1e-3, fair_weight=0.01,
                       drop_prob=0.05, shuffle_prob=0.5, curriculum=True, resolution=64, batch_size=2,
                       checkpoint_every=2, sample_every=0, api_name="/train_start")
    assert "one person" in message and "biden.jpg looks like a different person" in message
    assert len(studio.ctx.jobs.list()) == before


def test_a_damaged_identity_or_job_breaks_nothing_for_the_others(client, photo, studio):
    broken = studio.home / "identities" / "broken"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "identity.json").write_text('[{"name": 5, "photos": null}]')
    job = studio.home / "jobs" / "20260101-000000-damaged"
    job.mkdir(parents=True, exist_ok=True)
    (job / "job.json").write_text('{"name": "damaged", "created_at": 1}')
    (job / "status.json").write_text('{"state": "running", "pid": "abc", "loss": "abc"}')
    status, saved = client.predict([photo("obama.jpg")], "", "Still Works", True, api_name="/save_identity")
    assert "Saved **Still Works**" in status and "broken" not in str(saved["choices"])
    assert "Type the subject words" in status  # no words and no gender/age model here: the user is told
    text, data, *_ = client.predict(job.name, api_name="/train_status")
    assert data["status"]["state"] == "failed" and "status.json is damaged" in text
    message, saved, _ = client.predict("broken", api_name="/delete_identity")
    assert "Deleted" in message and not broken.exists()
    client.predict("Still Works", api_name="/delete_identity")


# -- with --auth ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tiny_studio, tmp_path_factory):
    """A second studio, with a password and a short lock-out (3 wrong passwords, 30 s)."""
    import app
    from facestudio.config import StudioSettings
    from tests.ui.conftest import free_port

    home = tmp_path_factory.mktemp("guarded-home")
    args = app.parse_args(["--device", "cpu", "--backend", "mediapipe", "--base-model", str(tiny_studio.base),
                           "--auth", "alice:right", "--login-attempts", "3", "--login-lockout", "30"])
    ctx, demo = app.create_studio(args, StudioSettings(home=home, offline=True))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                auth=app.parse_auth(args.auth), **app.launch_options(args, ctx))
    try:
        yield f"http://127.0.0.1:{port}/", home
    finally:
        demo.close()


def test_the_login_page_tells_nothing_about_the_studio(guarded, tiny_studio):
    url, home = guarded
    page = httpx.get(url, timeout=30).text
    assert "auth_required" in page
    assert "/generate" not in page and "train_start" not in page and "named_endpoints" not in page
    assert str(home) not in page and str(tiny_studio.base) not in page
    assert httpx.get(f"{url}gradio_api/info", timeout=30).status_code == 401


def test_wrong_passwords_lock_the_address_out_even_for_the_right_one(guarded, caplog):
    url, _home = guarded
    with httpx.Client(timeout=30) as http:
        assert http.post(f"{url}login", data={"username": "alice", "password": "right"}).status_code == 200
        codes = [http.post(f"{url}login", data={"username": "alice", "password": "wrong"}).status_code
                 for _ in range(3)]
        assert codes[:2] == [400, 400]
        assert http.post(f"{url}login", data={"username": "alice", "password": "right"}).status_code == 429
    assert any("logins from it are refused" in record.getMessage() for record in caplog.records)
