"""A written PNG record names files relative to FACESTUDIO_HOME or by name, and reading it back finds them again."""

from __future__ import annotations

import os

from facestudio.engine.metadata import portable_path, resolved_path


def test_files_inside_the_home_are_relative_and_found_again(tmp_path):
    home = tmp_path / "home"
    photo = home / "users" / "alice" / "identities" / "alex" / "photo-01.png"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"x")
    assert portable_path(str(photo), home) == "users/alice/identities/alex/photo-01.png"
    assert resolved_path("users/alice/identities/alex/photo-01.png", home) == str(photo)


def test_files_outside_the_home_keep_only_their_name(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    private = tmp_path / "private" / "me.jpg"
    private.parent.mkdir()
    private.write_bytes(b"x")
    assert portable_path(str(private), home) == "me.jpg"
    assert portable_path(str(private), None) == "me.jpg"
    assert portable_path(str(home / ".." / "private" / "me.jpg"), home) == "me.jpg"  # no way out through ".."
    assert resolved_path("me.jpg", home) == "me.jpg"  # not in the home: left to the caller (--face)


def test_a_model_linked_into_the_home_keeps_its_home_name(tmp_path):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    real = tmp_path / "elsewhere" / "base"
    real.mkdir(parents=True)
    os.symlink(real, home / "models" / "base")
    assert portable_path(str(home / "models" / "base"), home) == "models/base"
    assert resolved_path("models/base", home) == str(home / "models" / "base")


def test_registry_names_hub_ids_and_old_absolute_paths_stay(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    for value in ("majicmix", "runwayml/stable-diffusion-v1-5", "hf:owner/name", "auto"):
        assert portable_path(value, home) == value and resolved_path(value, home) == value
    assert resolved_path("/somewhere/old.png", home) == "/somewhere/old.png"
    assert resolved_path("../outside.png", home) == "../outside.png"
