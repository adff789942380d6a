"""FaceChain style files -> presets whose LoRA is a ModelScope reference; bad files are skipped by name."""

from __future__ import annotations

import json

import pytest

from facestudio.cli.main import main
from facestudio.engine.facechain_styles import import_facechain_styles
from facestudio.engine.presets import load_presets
from facestudio.engine.requests import GenerateRequest

STYLE = {"name": "Autumn (test)", "img": "./style_image/a.jpg", "model_id": "someone/style_lora", "revision": "v1",
         "bin_file": "autumn.safetensors", "multiplier_style": 0.35, "multiplier_human": 0.9,
         "add_prompt_style": "autumn forest, golden leaves"}


@pytest.fixture
def styles(tmp_path):
    folder = tmp_path / "styles" / "MajicmixRealistic_v6"
    folder.mkdir(parents=True)
    (folder / "Autumn_style.json").write_text(json.dumps(STYLE), encoding="utf-8")
    (folder / "No_lora.json").write_text(json.dumps({**STYLE, "model_id": None}), encoding="utf-8")
    (folder / "Escape.json").write_text(json.dumps({**STYLE, "bin_file": "../../x.safetensors"}), encoding="utf-8")
    (folder / "Broken.json").write_text("{not json", encoding="utf-8")
    (folder / "Other.json").write_text(json.dumps({"hello": 1}), encoding="utf-8")
    return tmp_path / "styles"


def test_styles_become_presets_with_hub_loras_and_bad_files_are_named(styles, tmp_path):
    out = tmp_path / "presets"
    report = import_facechain_styles(styles, out)
    assert sorted(report.written) == ["facechain-autumn_style", "facechain-no_lora"]
    skipped = " ".join(report.skipped)
    assert "Escape.json: bin_file" in skipped and "Broken.json cannot be read" in skipped
    assert "Other.json is not a FaceChain style" in skipped and len(report.skipped) == 3
    presets, problems = load_presets(out, out)
    assert problems == []
    autumn = next(p for p in presets if p.key == "facechain-autumn_style")
    assert autumn.lora == "modelscope:someone/style_lora/autumn.safetensors@v1" and autumn.lora_scale == 0.35
    request = autumn.apply(GenerateRequest(faces=("a.png",), prompt="x"), "a woman")
    assert request.prompt == "a woman, autumn forest, golden leaves"
    assert (request.scheduler, request.steps, request.cfg, request.lora) == ("pndm", 50, 7.0, autumn.lora)
    no_lora = next(p for p in presets if p.key == "facechain-no_lora")
    assert (no_lora.lora, no_lora.lora_scale) == ("portrait-lora", 0.35)  # the release's default, at the multiplier


def test_the_portrait_lora_is_a_registry_file_fetched_like_a_hub_reference():
    from facestudio.engine.registry import ModelRegistry, is_remote_lora, resolve_source

    registry = ModelRegistry.default()
    record = resolve_source("portrait-lora", "lora", registry).hub_record
    assert (record.hub, record.repo, record.revision) == ("modelscope", "Cherrytest/zjz_mj_jiyi_small_addtxt_fromleo",
                                                          "v1.0.0")
    assert str(record.file).endswith(".safetensors")
    assert is_remote_lora("portrait-lora", registry) and not is_remote_lora("majicmix", registry)
    assert not is_remote_lora("style.safetensors", registry)


def test_a_preset_naming_a_lora_outside_its_hub_file_is_refused(tmp_path):
    from facestudio.engine.presets import load_preset
    from facestudio.errors import InvalidRequestError

    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "x", "prompt": "{prompt}", "lora": "modelscope:someone/repo"}))
    with pytest.raises(InvalidRequestError, match=r"must name a \.safetensors file"):
        load_preset(path)


def test_cli_imports_into_the_home_presets(styles, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACESTUDIO_HOME", str(tmp_path / "home"))
    assert main(["presets", "import-facechain", str(styles)]) == 0
    out = capsys.readouterr().out
    assert "imported facechain-autumn_style" in out and "skipped: Broken.json" in out
    assert (tmp_path / "home" / "presets" / "facechain-autumn_style.json").is_file()
