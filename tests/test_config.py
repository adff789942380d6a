"""`StudioSettings`: read from the environment once, by the entry points, and passed down; library code reads none
of these variables itself (checked by scanning the source, like the layering test)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from facestudio.config import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_ZIP_BYTES,
    StudioSettings,
    parse_flag,
)
from facestudio.errors import ImageLoadError, ModelNotAvailableError, SettingsError
from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "facestudio"
#: The layers below the fronts: they get settings passed in and never look at the environment for them.
LIBRARY_LAYERS = ("face", "fact", "engine", "training", "jobs")
STUDIO_PREFIXES = ("FACESTUDIO_", "HF_")


def test_no_variables_give_the_documented_defaults():
    settings = StudioSettings.from_env({})
    assert settings == StudioSettings()
    assert settings.home == Path.home() / ".cache" / "facestudio"
    assert settings.insightface_root == Path.home() / ".insightface"
    assert (settings.offline, settings.max_pixels, settings.max_zip_bytes) == (False, 64_000_000, 2 * 1024**3)
    assert (settings.max_pixels, settings.max_zip_bytes) == (DEFAULT_MAX_PIXELS, DEFAULT_MAX_ZIP_BYTES)
    assert StudioSettings.from_env({"FACESTUDIO_HOME": "  ", "FACESTUDIO_MAX_PIXELS": ""}) == settings  # empty = unset


@pytest.mark.parametrize(("variable", "value", "field", "expected"), [
    ("FACESTUDIO_HOME", "{tmp}/studio", "home", "{tmp}/studio"),
    ("FACESTUDIO_OFFLINE", "1", "offline", True),
    ("HF_HUB_OFFLINE", "yes", "offline", True),
    ("FACESTUDIO_MAX_PIXELS", "1000", "max_pixels", 1000),
    ("FACESTUDIO_MAX_ZIP_BYTES", " 2048 ", "max_zip_bytes", 2048),
    ("FACESTUDIO_INSIGHTFACE_ROOT", "{tmp}/packs", "insightface_root", "{tmp}/packs"),
])
def test_each_variable_sets_its_field_and_nothing_else(tmp_path, variable, value, field, expected):
    tmp = str(tmp_path.resolve())
    settings = StudioSettings.from_env({variable: value.format(tmp=tmp)})
    if isinstance(expected, str):
        expected = Path(expected.format(tmp=tmp))
    assert getattr(settings, field) == expected
    others = {name: getattr(StudioSettings(), name) for name in ("home", "offline", "max_pixels", "max_zip_bytes",
                                                                  "insightface_root") if name != field}
    assert {name: getattr(settings, name) for name in others} == others


def test_a_relative_home_is_made_absolute_and_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert StudioSettings.from_env({"FACESTUDIO_HOME": "here"}).home == (tmp_path / "here").resolve()
    assert StudioSettings.from_env({"FACESTUDIO_HOME": "~/studio"}).home == (Path.home() / "studio").resolve()
    assert StudioSettings(home="~/x").home == Path.home() / "x"


@pytest.mark.parametrize(("variable", "value"), [
    ("FACESTUDIO_MAX_PIXELS", "lots"),
    ("FACESTUDIO_MAX_PIXELS", "0"),
    ("FACESTUDIO_MAX_PIXELS", "-5"),
    ("FACESTUDIO_MAX_ZIP_BYTES", "1.5"),
    ("FACESTUDIO_MAX_ZIP_BYTES", "0"),
    ("FACESTUDIO_OFFLINE", "maybe"),
    ("HF_HUB_OFFLINE", "2"),
])
def test_a_bad_value_is_refused_in_one_sentence_naming_the_variable(variable, value):
    with pytest.raises(SettingsError, match=rf"^{variable} must be .*; got {value!r}\.$"):
        StudioSettings.from_env({variable: value})


def test_bounds_hold_for_settings_made_in_code_too():
    with pytest.raises(SettingsError, match="FACESTUDIO_MAX_PIXELS must be"):
        StudioSettings(max_pixels=0)
    with pytest.raises(SettingsError, match="FACESTUDIO_MAX_ZIP_BYTES must be"):
        StudioSettings(max_zip_bytes=True)


@pytest.mark.parametrize(("value", "expected"), [
    ("1", True), ("true", True), ("YES", True), (" On ", True),
    (None, False), ("", False), ("0", False), ("false", False), ("No", False), ("off", False),
])
def test_on_off_values(value, expected):
    assert parse_flag("FACESTUDIO_X", value) is expected


def test_to_env_gives_a_child_process_the_same_settings(tmp_path):
    settings = StudioSettings(home=tmp_path.resolve() / "home", offline=True, max_pixels=123, max_zip_bytes=456,
                              insightface_root=tmp_path.resolve() / "packs")
    env = settings.to_env()
    assert StudioSettings.from_env(env) == settings
    assert env["HF_HUB_OFFLINE"] == "1"  # the hub clients in the child read this one themselves
    assert StudioSettings.from_env(StudioSettings().to_env()) == StudioSettings.from_env({})


def test_the_job_runner_starts_the_trainer_with_the_studio_settings(tmp_path):
    """The trainer is an entry point of its own: what the studio was told reaches it through its environment."""
    from facestudio.jobs import JobRunner, JobStore
    from facestudio.training.config import TrainConfig

    store = JobStore(tmp_path / "home")
    job = store.submit_training(TrainConfig(dataset="fake:ok", steps=2, checkpoint_every=1), "env")
    settings = StudioSettings(home=tmp_path / "home", offline=True, max_pixels=4321)
    probe = "import os; print('seen', os.environ['FACESTUDIO_MAX_PIXELS'], os.environ['FACESTUDIO_OFFLINE'])"
    JobRunner(store, command_for=lambda root: [sys.executable, "-c", probe], poll_seconds=0.02,
              settings=settings).run_until_idle()
    assert "seen 4321 1" in job.folder.log_path.read_text()
    with pytest.raises(ValueError, match="not the job store's home"):
        JobRunner(store, settings=StudioSettings(home=tmp_path / "elsewhere"))


# -- what the library does with the values it is given ----------------------------------------------------------------


def test_load_image_refuses_an_image_over_the_max_pixels_it_is_given(tmp_path, monkeypatch):
    from PIL import Image

    from facestudio.face import load_image

    path = tmp_path / "wide.png"
    Image.new("RGB", (400, 300)).save(path)
    monkeypatch.setenv("FACESTUDIO_MAX_PIXELS", "1")  # the library must not read it
    assert load_image(path).size == (400, 300)
    with pytest.raises(ImageLoadError, match="over the limit of"):
        load_image(path, max_pixels=400 * 300 - 1)


def test_the_engine_applies_the_settings_max_pixels_to_request_photos(faces_dir, tmp_path):
    """A reference photo over `StudioSettings.max_pixels` is refused before any model is looked for."""
    from facestudio.engine import Engine, EngineSettings, GenerateRequest, ModelManager, select_device

    settings = StudioSettings(home=tmp_path / "home", offline=True, max_pixels=10_000)
    manager = ModelManager(EngineSettings.from_settings(settings, placement=select_device("cpu"),
                                                        face_backend="mediapipe", embedder="dlib"))
    assert (manager.settings.home, manager.settings.max_pixels) == (settings.home, 10_000)
    with pytest.raises(ImageLoadError, match=r"obama\.jpg .* over the limit of"):
        Engine(manager).generate(GenerateRequest(faces=[str(faces_dir / "obama.jpg")], prompt="a portrait"))
    assert set(manager.load_count) <= {"face_analyzer"}  # no base model, adapter or encoder was loaded


def test_offline_reaches_the_hub_from_the_settings_not_the_environment(tmp_path, monkeypatch):
    from facestudio.engine import EngineSettings, ModelHub, ModelManager, ModelRegistry

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FACESTUDIO_OFFLINE", "1")
    assert ModelHub(tmp_path).offline is False  # the library ignores the variables; the entry point reads them
    manager = ModelManager(EngineSettings.from_settings(StudioSettings(home=tmp_path, offline=True)))
    assert manager.hub.offline is True and manager.hub.home == tmp_path
    record = ModelRegistry.default().get("openpose")
    with pytest.raises(ModelNotAvailableError, match="downloads are off"):
        manager.hub.fetch(record)


def test_the_insightface_root_given_is_where_packs_are_looked_for(tmp_path, monkeypatch):
    from facestudio.face.detectors.insightface_backend import find_insightface_pack

    pack = tmp_path / "models" / "buffalo_l"
    pack.mkdir(parents=True)
    (pack / "det_10g.onnx").write_bytes(b"")
    monkeypatch.setenv("FACESTUDIO_INSIGHTFACE_ROOT", str(tmp_path / "elsewhere"))
    assert find_insightface_pack(tmp_path).detection == pack / "det_10g.onnx"
    assert find_insightface_pack(tmp_path / "elsewhere") is None


# -- nobody below the fronts reads the environment ------------------------------------------------------------------


def environment_reads(source: str, filename: str = "<source>") -> list[str]:
    """Reads of a FaceStudio/Hugging Face variable in `source`: `os.environ.get(K)`, `os.environ[K]`, `os.getenv(K)`,
    `K in os.environ` (also through `from os import environ, getenv`). A key that is not a literal counts too: it
    cannot be told apart from one. Passing the whole environment on (`dict(os.environ)`) is not a read."""

    def is_environ(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
            isinstance(node, ast.Name) and node.id == "environ")

    def is_getenv(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "getenv") or (
            isinstance(node, ast.Name) and node.id == "getenv")

    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        key = None
        if isinstance(node, ast.Call) and node.args and (
                is_getenv(node.func) or (isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "pop")
                                         and is_environ(node.func.value))):
            key = node.args[0]
        elif isinstance(node, ast.Subscript) and is_environ(node.value) and isinstance(node.ctx, ast.Load):
            key = node.slice
        elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators) and any(
                isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            key = node.left
        if key is None:
            continue
        name = key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else None
        if name is None or name.startswith(STUDIO_PREFIXES):
            found.append((node.lineno, f"{filename}:{node.lineno} {name or ast.unparse(key)}"))
    return [text for _, text in sorted(found)]


def test_the_scanner_sees_every_way_of_reading_a_variable():
    planted = (
        "import os\nfrom os import environ, getenv\n"
        "a = os.environ.get('FACESTUDIO_HOME')\n"
        "b = os.getenv('HF_HUB_OFFLINE', '0')\n"
        "c = os.environ['FACESTUDIO_MAX_PIXELS']\n"
        "d = any(os.environ.get(name) for name in NAMES)\n"
        "e = 'FACESTUDIO_OFFLINE' in os.environ\n"
        "f = environ.get('FACESTUDIO_INSIGHTFACE_ROOT')\n"
        "g = getenv('FACESTUDIO_MAX_ZIP_BYTES')\n"
        # allowed: the launcher's rank, logging noise for native libraries, the environment handed to a child
        "h = int(os.environ.get('RANK', '0'))\n"
        "os.environ.setdefault('GLOG_minloglevel', '2')\n"
        "env = {**os.environ, 'PYTHONUNBUFFERED': '1'}\n"
    )
    found = environment_reads(planted)
    assert [line.split()[1] for line in found] == [
        "FACESTUDIO_HOME", "HF_HUB_OFFLINE", "FACESTUDIO_MAX_PIXELS", "name", "FACESTUDIO_OFFLINE",
        "FACESTUDIO_INSIGHTFACE_ROOT", "FACESTUDIO_MAX_ZIP_BYTES"]


@pytest.mark.parametrize("layer", LIBRARY_LAYERS)
def test_library_layers_read_no_studio_variable(layer):
    found = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        found += environment_reads(path.read_text(), str(path.relative_to(REPO_ROOT)))
    assert found == []


def test_on_off_words_are_parsed_in_config_only():
    """One parser of "true": no other module spells the list of on-words."""
    spelled = []
    for path in [REPO_ROOT / "app.py", *sorted(PACKAGE.rglob("*.py"))]:
        if path == PACKAGE / "config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                words = {elt.value for elt in node.elts if isinstance(elt, ast.Constant)}
                if {"true", "yes"} <= words or {"true", "on"} <= words:
                    spelled.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert spelled == []
