"""`facestudio evaluate` and the evaluation at the end of a run: adapters side by side on held-out photos."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from facestudio.errors import TrainingError
from facestudio.training import RunState, create_run
from facestudio.training.arguments import TrainArgs
from facestudio.training.evaluation import EVALUATION_FILE, face_score, identity_embedding, read_evaluation
from facestudio.training.train_fact import run_training


def test_identity_score_prefers_the_same_person(faces_dir, analyzer):
    from PIL import Image

    from facestudio.face.image import load_image

    target = identity_embedding(analyzer, [faces_dir / "obama.jpg"])
    same = face_score(analyzer, load_image(faces_dir / "obama2.jpg"), target)
    other = face_score(analyzer, load_image(faces_dir / "biden.jpg"), target)
    assert same is not None and other is not None and same > other
    assert face_score(analyzer, Image.new("RGB", (128, 128), "gray"), target) is None  # no face: not scored


def test_evaluate_json_on_two_adapters(tmp_path, tiny_studio, four_photo_dataset, training_home, capsys):
    from facestudio.cli.main import main

    second = tmp_path / "other.safetensors"
    shutil.copy(tiny_studio.adapter, second)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# one prompt\n\na portrait photo\n", encoding="utf-8")
    from tests.engine.tiny_models import write_tiny_clip

    clip = tmp_path / "clip"
    write_tiny_clip(clip)
    code = main(["evaluate", "--dataset", str(four_photo_dataset), "--adapter", str(tiny_studio.adapter),
                 "--adapter", str(second), "--prompts", str(prompts), "--seeds", "1", "--steps", "2", "--size",
                 "256", "--base-model", str(tiny_studio.base), "--face-encoder", str(tiny_studio.face_encoder),
                 "--device", "cpu", "--backend", "mediapipe", "--clip-model", str(clip), "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["adapter"] for row in rows] == [str(tiny_studio.adapter), str(second)]
    for row in rows:
        assert set(row) >= {"adapter", "identity", "clip", "images"}
        assert set(row["identity"]) == {"mean", "min", "max"}
        assert isinstance(row["clip"], float) and 0.0 <= row["clip"] <= 100.0  # the tiny CLIP's prompt score
        assert row["images"] == 1  # obama (the one person with a held-out photo) x 1 prompt x 1 seed
        if row["faces"] == 0:  # the tiny random models draw no face: nothing to score
            assert row["identity"] == {"mean": None, "min": None, "max": None}

    with pytest.raises(TrainingError, match="seeds") as caught:
        main(["--debug", "evaluate", "--dataset", str(four_photo_dataset), "--adapter", "x", "--seeds", "0"])
    assert caught.value.field == "seeds"


def test_a_run_evaluates_its_adapter_against_the_start_and_a_failure_keeps_it_done(tmp_path, train_config, manager,
                                                                                 four_photo_dataset, monkeypatch,
                                                                                 caplog):
    config = train_config(dataset=str(four_photo_dataset), steps=1, batch_size=1, sample_seeds=(0,))
    run = create_run(tmp_path / "run", config, state=RunState.RUNNING)
    assert run_training(TrainArgs(run, None), manager=manager).state == RunState.DONE
    report = read_evaluation(run.root)
    assert report is not None and report["against"] == "held-out" and len(report["held_out"]) == 1
    assert report["before"]["adapter"] == "fact.safetensors" and report["after"]["adapter"] == "adapter.safetensors"
    assert report["before"]["images"] == report["after"]["images"] == 2  # 2 default prompts x 1 seed
    assert report["before"]["clip"] is None  # no CLIP model on disk: not scored, never downloaded

    def broken(*_args, **_kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("facestudio.training.evaluation.evaluate_run", broken)
    again = create_run(tmp_path / "again", config, state=RunState.RUNNING)
    with caplog.at_level(logging.WARNING):
        status = run_training(TrainArgs(again, None), manager=manager)
    assert status.state == RunState.DONE and again.read_status().state == RunState.DONE
    assert again.adapter_path.is_file() and not (again.root / EVALUATION_FILE).exists()
    assert "evaluation" in caplog.text and "out of memory" in caplog.text
