"""Preset thumbnails: every shipped preset names a card that exists, and the cards are what the script draws."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest
from PIL import Image

from facestudio.data import assets_dir, presets_dir
from facestudio.engine.presets import load_presets
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "make_preset_thumbnails.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """scripts/ is not a package: load the script from its file."""
    spec = importlib.util.spec_from_file_location("make_preset_thumbnails", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def test_every_preset_has_a_256_square_thumbnail():
    presets, _ = load_presets(presets_dir(), assets_dir())  # that they load is test_presets.py's business
    assert presets
    for preset in presets:
        assert preset.thumbnail is not None, f"{preset.key} names no thumbnail"
        assert preset.thumbnail.is_file()
        with Image.open(preset.thumbnail) as image:
            image.load()
            assert image.size == (256, 256), preset.key


def test_committed_thumbnails_match_the_script(script, capsys):
    """Without flags the script checks the package data the studio reads (the built-in presets and their cards)."""
    assert (script.DATA / "presets").resolve() == presets_dir().resolve()
    assert (script.DATA / "assets").resolve() == assets_dir().resolve()
    assert script.main(["--check"]) == 0, capsys.readouterr().out


def test_check_names_a_missing_or_outdated_card_and_writes_nothing(script, tmp_path, capsys):
    presets, assets = tmp_path / "presets", tmp_path / "assets"
    presets.mkdir()
    for key in ("film-noir", "brand-new-style"):  # a key with a row, and one that gets the fallback card
        (presets / f"{key}.json").write_text('{"name": "x", "prompt": "{prompt}"}\n', encoding="utf-8")
    assert script.main(["--check", "--presets", str(presets), "--assets", str(assets)]) == 1
    assert "brand-new-style" in capsys.readouterr().out
    assert not assets.exists()

    assert script.main(["--presets", str(presets), "--assets", str(assets)]) == 0
    card = assets / "presets" / "brand-new-style.png"
    first = card.read_bytes()
    assert script.main(["--check", "--presets", str(presets), "--assets", str(assets)]) == 0

    Image.new("RGB", (256, 256), "white").save(card)
    assert script.main(["--check", "--presets", str(presets), "--assets", str(assets)]) == 1
    assert "brand-new-style" in capsys.readouterr().out
    assert script.main(["--presets", str(presets), "--assets", str(assets)]) == 0
    assert card.read_bytes() == first  # the same bytes on every run
