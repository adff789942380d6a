"""Style presets: the shipped ones load and give valid requests; broken files are named, never fatal."""

from __future__ import annotations

import json

import pytest

from facestudio.engine import GenerateRequest
from facestudio.engine.presets import load_preset, load_presets
from facestudio.errors import InvalidRequestError
from tests.conftest import REPO_ROOT


def test_shipped_presets_load_and_make_valid_requests():
    presets, problems = load_presets(REPO_ROOT / "presets", REPO_ROOT / "assets")
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
    preset = load_preset(REPO_ROOT / "presets" / "film-noir.json", REPO_ROOT / "assets")
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
