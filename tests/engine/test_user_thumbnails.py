""""Use as thumbnail": a result saved as a preset's card under FACESTUDIO_HOME, small and without the result's
metadata; a damaged card file falls back to the drawn card with a warning."""

from __future__ import annotations

import logging

import pytest
from PIL import Image, PngImagePlugin

from facestudio.engine.presets import THUMBNAIL_SIZE_PX, save_user_thumbnail, user_thumbnail, user_thumbnails_dir
from facestudio.errors import InvalidRequestError


def test_a_result_becomes_a_small_card_without_its_settings(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("facestudio", '{"faces": ["/home/me/photo.jpg"]}')
    result = tmp_path / "result.png"
    Image.new("RGB", (640, 512), (200, 10, 10)).save(result, pnginfo=info)
    home = tmp_path / "home"
    card = save_user_thumbnail(home, "film-noir", result)
    assert card == user_thumbnails_dir(home) / "film-noir.png" == user_thumbnail(home, "film-noir")
    with Image.open(card) as image:
        assert max(image.size) == THUMBNAIL_SIZE_PX and image.size == (256, 205)
        assert not {key for key in image.info if key not in ("dpi", "gamma", "srgb")}
    assert not list(user_thumbnails_dir(home).glob("*.tmp"))


def test_no_card_and_a_damaged_card_fall_back_to_the_drawn_one(tmp_path, caplog):
    assert user_thumbnail(tmp_path, "astronaut") is None
    user_thumbnails_dir(tmp_path).mkdir()
    (user_thumbnails_dir(tmp_path) / "astronaut.png").write_bytes(b"\x89PNG broken")
    problems: list[str] = []
    with caplog.at_level(logging.WARNING):
        assert user_thumbnail(tmp_path, "astronaut", problems) is None
    assert problems == ["The thumbnail thumbnails/astronaut.png cannot be read; the drawn card is shown instead."]
    assert "drawn card" in caplog.text


def test_a_card_key_cannot_name_a_path(tmp_path):
    source = tmp_path / "r.png"
    Image.new("RGB", (8, 8)).save(source)
    with pytest.raises(InvalidRequestError, match="no style preset"):
        save_user_thumbnail(tmp_path, "../evil", source)


def test_a_truncated_or_oversized_card_falls_back_too(tmp_path):
    folder = user_thumbnails_dir(tmp_path)
    folder.mkdir()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(folder / "whole.png")
    data = (folder / "whole.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (2000, 2000)).save(folder / "huge.png")
    assert user_thumbnail(tmp_path, "whole") == folder / "whole.png"
    assert user_thumbnail(tmp_path, "cut") is None
    assert user_thumbnail(tmp_path, "huge") is None
