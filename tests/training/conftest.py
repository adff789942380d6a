"""Training fixtures (the tiny dataset and `train_config` live in tests/conftest.py: the job tests use them too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.conftest import tiny_request  # noqa: F401  (a generation request over the tiny models)


@pytest.fixture
def training_home(tmp_path, monkeypatch) -> Path:
    """An empty, offline FACESTUDIO_HOME for the entry points these tests start (the command line, the trainer)."""
    home = tmp_path / "home"
    monkeypatch.setenv("FACESTUDIO_HOME", str(home))
    monkeypatch.setenv("FACESTUDIO_OFFLINE", "1")
    return home


@pytest.fixture
def manager(training_home):
    """The model manager the trainer's entry point would build on that home, for training run in this process."""
    from facestudio.config import StudioSettings
    from facestudio.training.train_fact import model_manager

    return model_manager(StudioSettings(home=training_home, offline=True))


def train_argv(config) -> list[str]:
    """The `python -m facestudio train` flags that give `config` (for subprocess tests)."""
    return [
        config.dataset, "--base-model", config.base_model, "--init", config.init, "--face-encoder",
        config.face_encoder, "--steps", str(config.steps), "--batch-size", str(config.batch_size), "--resolution",
        str(config.resolution), "--lr", str(config.lr), "--warmup-steps", str(config.warmup_steps),
        "--checkpoint-every", str(config.checkpoint_every), "--keep-checkpoints", str(config.keep_checkpoints),
        "--sample-every", str(config.sample_every), "--sample-steps", str(config.sample_steps), "--seed",
        str(config.seed), "--cpu",
    ]


@pytest.fixture(scope="session")
def four_photo_dataset(tiny_dataset, tmp_path_factory) -> Path:
    """The tiny dataset with obama at 4 photos (his two prepared photos, and each mirrored as another photo), so
    the default holdout (1 of a person with >= 4 photos) applies; biden keeps his single photo."""
    import json
    import shutil

    from PIL import Image

    out = tmp_path_factory.mktemp("four-photos") / "dataset"
    shutil.copytree(tiny_dataset, out, ignore=shutil.ignore_patterns(".encodings"))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    copies = []
    for entry in manifest["items"]:
        if entry["identity"] != "obama":
            continue
        copy = dict(entry, sha256=entry["sha256"][::-1], source=f"mirrored-{entry['source']}")
        for key in ("image", "face_mask", "head_mask", "reference"):
            name = Path(entry[key])
            copy[key] = str(name.with_name(f"m{name.name}"))
            Image.open(out / entry[key]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(out / copy[key])
        width = Image.open(out / entry["image"]).width
        x0, y0, x1, y1 = entry["bbox"]
        copy["bbox"] = [round(width - x1, 2), y0, round(width - x0, 2), y1]
        copy["kps"] = [[round(width - x, 2), y] for x, y in entry["kps"]]
        copies.append(copy)
    assert len(copies) == 2
    manifest["items"] += copies
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return out
