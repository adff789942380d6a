"""How the studio starts: flags and FACESTUDIO_* variables, the share warning, and which files requests may use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import app
from facestudio.config import StudioSettings
from facestudio.errors import InvalidRequestError, SettingsError


def test_flags_default_from_the_environment(monkeypatch):
    monkeypatch.setenv("FACESTUDIO_PORT", "9000")
    monkeypatch.setenv("FACESTUDIO_HOST", "0.0.0.0")
    monkeypatch.setenv("FACESTUDIO_LOW_VRAM", "1")
    monkeypatch.setenv("FACESTUDIO_BASE_MODEL", "film")
    args = app.parse_args([])
    assert (args.port, args.host, args.low_vram, args.base_model) == (9000, "0.0.0.0", True, "film")
    assert app.parse_args(["--port", "7000"]).port == 7000  # a flag wins over the variable


def test_the_studio_uses_the_controlnets_it_was_started_with(tmp_path, monkeypatch):
    """--pose-controlnet (alias --controlnet) and --canny-controlnet reach every request the page makes."""
    monkeypatch.setenv("FACESTUDIO_CANNY_CONTROLNET", "my/canny")
    settings = StudioSettings(home=tmp_path, offline=True)
    ctx, _ = app.create_studio(app.parse_args(["--no-jobs", "--controlnet", "my/pose"]), settings)
    models = ctx.default_models()
    assert (models.controlnet, models.canny_controlnet) == ("my/pose", "my/canny")
    assert app.parse_args(["--pose-controlnet", "x"]).controlnet == "x"
    # The Inpaint tab's choices: the empty one keeps the studio's, a registry ControlNet replaces it, others refused.
    from facestudio.ui.inpaint_tab import models_for

    assert ctx.controlnet_choices("controlnet")[0] == ("default (my/pose)", "")
    assert {"canny", "openpose"} <= {value for _, value in ctx.controlnet_choices("canny_controlnet")}
    picked = models_for(ctx, "", "openpose")
    assert (picked.controlnet, picked.canny_controlnet) == ("my/pose", "openpose")
    with pytest.raises(InvalidRequestError, match="not one of the offered Canny ControlNet choices"):
        models_for(ctx, None, "/etc/passwd")


def test_the_studio_gets_the_settings_it_is_given(tmp_path, monkeypatch):
    """`app.py` reads the environment once (`StudioSettings.from_env`) and hands the object down: the job runner,
    the identity store and the engine use it, not variables of their own."""
    monkeypatch.setenv("FACESTUDIO_HOME", str(tmp_path / "from-env"))
    settings = StudioSettings(home=tmp_path / "given", offline=True, max_pixels=1234)
    ctx, _ = app.create_studio(app.parse_args(["--no-jobs"]), settings)
    assert ctx.settings is settings and ctx.home == tmp_path / "given"
    assert ctx.runner.settings is settings and ctx.identities.max_pixels == 1234
    assert app.create_studio(app.parse_args(["--no-jobs"]))[0].home == tmp_path / "from-env"  # default: from_env
    monkeypatch.setenv("FACESTUDIO_MAX_PIXELS", "many")
    with pytest.raises(SystemExit, match=r"^error: FACESTUDIO_MAX_PIXELS must be"):
        app.main([])
    monkeypatch.setenv("FACESTUDIO_SHARE", "sure")
    with pytest.raises(SettingsError, match="FACESTUDIO_SHARE must be"):
        app.parse_args([])


def test_a_public_link_without_a_password_is_warned_about():
    assert "anyone with the public link" in app.share_warning(True, None)
    assert app.share_warning(True, ("u", "p")) is None and app.share_warning(False, None) is None
    assert "--host 0.0.0.0 without --auth" in app.share_warning(False, None, "0.0.0.0")
    assert app.share_warning(False, ("u", "p"), "0.0.0.0") is None
    assert app.share_warning(False, None, "127.0.0.1") is None and app.share_warning(False, None, "::1") is None


@pytest.mark.parametrize("text", ["user", ":pass", "user:"])
def test_auth_must_be_user_and_password(text):
    with pytest.raises(SystemExit, match="USER:PASS"):
        app.parse_auth(text)


def test_requests_may_use_uploads_and_the_studio_folder_only(tmp_path, monkeypatch):
    from facestudio.ui.context import StudioContext, StudioOptions

    uploads = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    ctx = StudioContext(StudioOptions(StudioSettings(home=tmp_path / "home"), run_jobs=False))
    (uploads / "abc").mkdir(parents=True)
    (uploads / "abc" / "me.jpg").write_bytes(b"x")
    assert ctx.uploaded_file(str(uploads / "abc" / "me.jpg"), "photo") == (uploads / "abc" / "me.jpg").resolve()
    with pytest.raises(InvalidRequestError, match="must be uploaded; passwd is not an upload"):
        ctx.uploaded_file("/etc/passwd", "photo")
    with pytest.raises(InvalidRequestError, match="not an upload"):
        ctx.uploaded_file(str(uploads / ".." / "elsewhere.jpg"), "photo")
    with pytest.raises(InvalidRequestError, match="missing"):
        ctx.uploaded_file(str(uploads / "gone.jpg"), "photo")
    assert ctx.uploaded_file(None, "photo") is None
    assert ctx.uploaded_file({"path": str(uploads / "abc" / "me.jpg")}, "photo").name == "me.jpg"  # raw payload
    home_file = tmp_path / "home" / "jobs" / "x" / "optimizer.safetensors"
    home_file.parent.mkdir(parents=True)
    home_file.write_bytes(b"x")
    with pytest.raises(InvalidRequestError, match="not an upload"):  # the studio's own files are not inputs
        ctx.uploaded_file(str(home_file), "photo")
    for bad in (5, ["a"], "a\x00b"):
        with pytest.raises(InvalidRequestError, match="photo"):
            ctx.uploaded_file(bad, "photo")
    assert not ctx.engine_started  # building the context loads nothing


def test_paths_are_shown_relative_to_the_home_and_files_handed_out_under_random_names(tmp_path, monkeypatch):
    from facestudio.ui.context import StudioContext, StudioOptions, clip

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    home = tmp_path / "home"
    ctx = StudioContext(StudioOptions(StudioSettings(home=home), adapter="/models/mine.safetensors",
                                      run_jobs=False))
    (home / "loras").mkdir(parents=True)
    (home / "loras" / "style.safetensors").write_bytes(b"x")
    assert ctx.shown_path(home / "jobs" / "a" / "adapter.safetensors") == "jobs/a/adapter.safetensors"
    assert ctx.shown_path("/models/mine.safetensors") == "…/mine.safetensors"
    assert ctx.shown_path("majicmix") == "majicmix"
    values = [v for _, v in ctx.lora_choices() + ctx.adapter_choices()]
    assert not any(str(tmp_path) in v or v.startswith("/") for v in values)
    assert "loras/style.safetensors" in values and "…/mine.safetensors" in values
    # the shown value stands for the file; the machine's path of an offered file is still accepted
    assert ctx.checked_choice("loras/style.safetensors", ctx.lora_choices, "LoRA") == \
        str(home / "loras" / "style.safetensors")
    assert ctx.checked_choice("…/mine.safetensors", ctx.adapter_choices, "adapter") == "/models/mine.safetensors"
    with pytest.raises(InvalidRequestError) as caught:
        ctx.checked_choice("x" * 10_000, ctx.adapter_choices, "adapter")
    assert len(str(caught.value)) < 200
    assert len(clip("y" * 10_000)) == 80

    result = home / "outputs" / "generate-20260101-000000-5.png"
    result.parent.mkdir(parents=True)
    result.write_bytes(b"png")
    first, second = ctx.handout(result), ctx.handout(result)
    assert first != second and Path(first).read_bytes() == b"png"
    assert Path(first).parent.parent == (tmp_path / "gradio").resolve()
    assert len(Path(first).parent.name) >= 24  # a random folder name: unguessable


def test_every_number_goes_through_one_check_naming_the_control():
    from facestudio.ui.common import field_label, number

    assert number("7", "steps", 1, 150, whole=True) == 7 and number(3.0, "steps", 1, 150, whole=True) == 3
    assert number(0.5, "cfg", 0.0, 30.0) == 0.5
    for bad in ("abc", float("nan"), float("inf"), None, True, 3.5, 0, 10**15, [1], "1e400"):
        with pytest.raises(InvalidRequestError) as caught:
            number(bad, "steps", 1, 150, whole=True)
        assert caught.value.field == "steps"
        assert caught.value.worded(field_label("steps")).startswith("Steps must be a whole number from 1 to 150")


def test_dropdown_values_are_checked_on_the_server(tmp_path):
    from facestudio.ui.context import StudioContext, StudioOptions

    ctx = StudioContext(StudioOptions(StudioSettings(home=tmp_path), adapter="/models/mine.safetensors",
                                      run_jobs=False))
    assert ctx.checked_choice("/models/mine.safetensors", ctx.adapter_choices, "adapter") == \
        "/models/mine.safetensors"
    assert ctx.checked_choice("", ctx.adapter_choices, "adapter") is None
    with pytest.raises(InvalidRequestError, match="not one of the offered adapter choices"):
        ctx.checked_choice(str(Path("/etc/passwd")), ctx.adapter_choices, "adapter")


def test_building_the_page_loads_no_model_and_no_torch(tmp_path):
    """The page must answer within seconds: building it imports neither torch nor OpenCV (models load on use)."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    code = ("import sys, app; ctx, demo = app.create_studio(app.parse_args([])); "
            "print(sorted(m for m in ('torch', 'diffusers', 'cv2', 'mediapipe') if m in sys.modules), "
            "ctx.engine_started)")
    env = {**os.environ, "FACESTUDIO_HOME": str(tmp_path), "GRADIO_ANALYTICS_ENABLED": "False"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.split("\n")[-2] == "[] False"


def test_gpu_work_is_marked_for_spaces_only_when_the_package_is_there(monkeypatch):
    import importlib
    import sys
    import types

    import facestudio.ui.common as common

    assert common.gpu_work(60)(len) is len  # no `spaces` package: unchanged
    marked = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda duration: (lambda fn: marked.append((fn, duration)) or fn)
    monkeypatch.setitem(sys.modules, "spaces", fake)
    try:
        importlib.reload(common)
        common.gpu_work(90)(len)
        assert marked == [(len, 90)]
    finally:
        monkeypatch.delitem(sys.modules, "spaces")
        importlib.reload(common)


def test_user_presets_in_the_studio_home_are_offered_and_served(tmp_path):
    from facestudio.ui.context import StudioContext, StudioOptions

    user = tmp_path / "presets"
    user.mkdir()
    (user / "mine.json").write_text('{"name": "Mine", "prompt": "{prompt}, mine"}')
    (user / "broken.json").write_text("{not json")
    ctx = StudioContext(StudioOptions(StudioSettings(home=tmp_path), run_jobs=False))
    assert ctx.preset("mine").name == "Mine" and ctx.preset("film-noir") is not None
    assert len(ctx.preset_problems) == 1 and "broken.json" in ctx.preset_problems[0]
    assert ctx.served_dirs() == []  # thumbnails reach the page through gradio's cache, no folder is served


def test_a_preset_fills_the_controls_through_its_apply_lora_scale_included(tmp_path):
    """The Generate tab's preset handler once rebuilt the request by hand and dropped the preset's LoRA scale."""
    import json

    from facestudio.engine.presets import load_preset
    from facestudio.engine.requests import GenerateRequest
    from facestudio.ui.generate_tab import PRESET_CONTROLS, preset_control_values

    (tmp_path / "style.safetensors").write_bytes(b"lora")
    path = tmp_path / "inked.json"
    path.write_text(json.dumps({"name": "Inked", "prompt": "ink drawing of {prompt}", "steps": 22, "cfg": 5.5,
                                "width": 512, "height": 640, "face_strength": 0.65, "lora": "style.safetensors",
                                "lora_scale": 0.35}))
    preset = load_preset(path, tmp_path)
    values = preset_control_values(preset, "a sailor")
    assert set(values) == set(PRESET_CONTROLS)
    applied = preset.apply(GenerateRequest(faces=["me.jpg"], prompt="x"), "a sailor")
    assert values["lora_scale"] == applied.lora_scale == 0.35
    assert (values["prompt"], values["steps"], values["cfg"], values["size"], values["face_strength"]) == \
        (applied.prompt, 22, 5.5, "512x640", 0.65)
    assert values["lora"] == applied.lora == str(tmp_path / "style.safetensors")


def test_a_generation_stops_when_its_client_is_gone():
    """Gradio marks the running event of a session whose page closed as not alive; the engine's stop check follows."""
    import threading
    from types import SimpleNamespace

    from gradio.context import LocalContext

    from facestudio.ui.generate_tab import should_stop

    event = SimpleNamespace(session_hash="s", alive=True)
    blocks = SimpleNamespace(_queue=SimpleNamespace(active_jobs=[[event], None]))
    token = LocalContext.blocks.set(blocks)
    try:
        flag = threading.Event()
        check, other = should_stop(flag, SimpleNamespace(session_hash="s")), should_stop(flag, None)
    finally:
        LocalContext.blocks.reset(token)
    assert not check() and not other()
    event.alive = False
    assert check() and not other()
    flag.set()
    assert other()


def test_the_login_throttle_locks_an_address_then_forgives():
    from facestudio.ui.guard import FailedLogins

    now = [0.0]
    logins = FailedLogins(3, 60.0, clock=lambda: now[0])
    for _ in range(2):
        logins.failed("1.2.3.4")
    assert not logins.locked("1.2.3.4")
    logins.failed("1.2.3.4")
    assert logins.locked("1.2.3.4") and not logins.locked("5.6.7.8")
    now[0] = 61.0
    assert not logins.locked("1.2.3.4")
    logins.failed("1.2.3.4")
    logins.succeeded("1.2.3.4")
    logins.failed("1.2.3.4")
    logins.failed("1.2.3.4")
    assert not logins.locked("1.2.3.4")  # a right password resets the count
