"""Style presets: the shipped ones load and give valid requests; broken files are named, never fatal; a user's own
presets (FACESTUDIO_HOME/presets) join the built-in ones."""

from __future__ import annotations

import json
import logging

import pytest

from facestudio.data import assets_dir, presets_dir
from facestudio.engine import GenerateRequest
from facestudio.engine.presets import load_preset, load_preset_library, load_presets
from facestudio.errors import InvalidRequestError


def test_shipped_presets_load_and_make_valid_requests():
    presets, problems = load_presets(presets_dir(), assets_dir())
    assert problems == []
    assert len(presets) >= 12
    assert len({p.name for p in presets}) == len(presets)
    base = GenerateRequest(faces=["me.jpg"], prompt="ignored", seed=5)
    for preset in presets:
        request = preset.apply(base, "a woman with red hair")
        request.checked()
        assert "a woman with red hair" in request.prompt and "{prompt}" not in request.prompt
        assert request.faces == ("me.jpg",) and request.seed == 5
        assert (request.width, request.height, request.steps) == (preset.width, preset.height, preset.steps)


def test_empty_user_prompt_still_names_a_subject():
    preset = load_preset(presets_dir() / "film-noir.json", assets_dir())
    assert "a person" in preset.render_prompt("  ")


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "cannot be read as JSON"),
    ('["a list"]', "must hold a JSON object"),
    ('{"name": "x"}', "missing prompt"),
    ('{"name": "x", "prompt": "no slot"}', "must contain {prompt}"),
    ('{"name": "x", "prompt": "{prompt}", "steps": 0}', "`steps` must be a whole number"),
    ('{"name": "x", "prompt": "{prompt}", "width": 500}', "`width` must be a multiple of 8"),
    ('{"name": "x", "prompt": "{prompt}", "colour": "red"}', "unknown fields colour"),
    ('{"name": "x", "prompt": "{prompt}", "thumbnail": "../../etc/passwd"}', "lies outside"),
    ('{"name": "x", "prompt": "{prompt}", "lora": "missing.safetensors"}', "does not exist"),
])
def test_broken_presets_are_named_and_skipped(tmp_path, content, message):
    (tmp_path / "good.json").write_text(json.dumps({"name": "Good", "prompt": "photo of {prompt}"}))
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(InvalidRequestError, match=r"bad\.json"):
        load_preset(tmp_path / "bad.json", tmp_path)
    presets, problems = load_presets(tmp_path, tmp_path)
    assert [p.key for p in presets] == ["good"]
    assert len(problems) == 1 and "bad.json" in problems[0] and message in problems[0]


def test_user_presets_join_the_built_in_ones_and_replace_one_by_key(tmp_path, caplog):
    from PIL import Image

    user = tmp_path / "presets"
    user.mkdir()
    Image.new("RGB", (256, 256), "black").save(user / "noir.png")
    (user / "film-noir.json").write_text(json.dumps({"name": "My Noir", "prompt": "noir {prompt}",
                                                     "thumbnail": "noir.png"}))
    (user / "mine.json").write_text(json.dumps({"name": "Mine", "prompt": "{prompt}, mine", "steps": 12}))
    (user / "broken.json").write_text('{"name": "Broken"}')
    built_in, _ = load_presets(presets_dir(), assets_dir())

    with caplog.at_level(logging.INFO, logger="facestudio.engine.presets"):
        presets, problems = load_preset_library(presets_dir(), assets_dir(), user)
    by_key = {preset.key: preset for preset in presets}
    assert set(by_key) == {p.key for p in built_in} | {"mine"}
    assert (by_key["film-noir"].name, by_key["film-noir"].thumbnail) == ("My Noir", (user / "noir.png").resolve())
    assert by_key["mine"].steps == 12
    assert [p.name.lower() for p in presets] == sorted(p.name.lower() for p in presets)
    assert len(problems) == 1 and "broken.json" in problems[0] and "missing prompt" in problems[0]
    assert "film-noir" in caplog.text and "replaces the built-in one" in caplog.text


def test_no_user_folder_gives_the_built_in_presets(tmp_path):
    presets, problems = load_preset_library(presets_dir(), assets_dir(), tmp_path / "none")
    assert (presets, problems) == load_presets(presets_dir(), assets_dir())
