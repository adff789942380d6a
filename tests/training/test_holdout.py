"""`--holdout`: photos kept out of training for evaluation, the same ones for the whole run (resume included)."""

from __future__ import annotations

import json

import pytest

from facestudio.training import RunState, create_run
from facestudio.training.arguments import TrainArgs
from facestudio.training.dataset import DatasetItem, load_manifest
from facestudio.training.holdout import HOLDOUT_FILE, choose_holdout, read_split
from facestudio.training.train_fact import parse_args, run_training


def items(counts: dict[str, int]) -> list[DatasetItem]:
    return [DatasetItem(identity=person, source=f"{person}/{i}.jpg", sha256=f"{person}{i}", image=f"images/{person}{i}",
                        face_mask="m", head_mask="h", reference="r", caption="a photo", bbox=(0, 0, 1, 1), kps=())
            for person, count in counts.items() for i in range(count)]


def test_default_holds_out_one_photo_of_each_person_with_four_or_more():
    photos = items({"ann": 4, "bob": 3, "cy": 6})
    split = choose_holdout(photos, None, seed=0)
    assert len(split.images) == 2 and {name[7:-1] for name in split.images} == {"ann", "cy"}
    assert choose_holdout(list(reversed(photos)), None, seed=0) == split  # the photos' order does not matter
    assert choose_holdout(photos, 0, seed=0).images == ()
    two = choose_holdout(photos, 2, seed=0).images
    assert len(two) == 6  # bob has 3: 2 held out, 1 left to train on
    assert not [name for name in choose_holdout(photos, 3, seed=0).images if "bob" in name]  # never all of them
    assert any(choose_holdout(photos, None, seed=s) != split for s in range(1, 6))  # the seed picks


def test_holdout_flag_and_old_configs():
    from facestudio.training import TrainConfig

    args = parse_args(["DATA", "--out", "RUN", "--holdout", "2"])
    assert args.config is not None and args.config.holdout == 2
    assert parse_args(["DATA", "--out", "RUN"]).config.holdout is None
    old = TrainConfig(dataset="d").to_dict()
    del old["holdout"]
    assert TrainConfig.from_dict(old).holdout == 0  # an earlier run trained on every photo, and still does


def test_held_out_photo_never_trains_and_resume_keeps_the_split(tmp_path, train_config, manager,
                                                                 four_photo_dataset):
    config = train_config(dataset=str(four_photo_dataset), steps=3, checkpoint_every=1, batch_size=1)
    run = create_run(tmp_path / "run", config, state=RunState.RUNNING)
    assert json.loads(run.config_path.read_text())["holdout"] is None  # the setting, as given

    def cancel_at_two(status):
        if status.step == 2:
            run.request_cancel()

    status = run_training(TrainArgs(run, None), on_progress=cancel_at_two, manager=manager)
    assert status.state == RunState.CANCELLED
    split = read_split(run.root)
    manifest = load_manifest(four_photo_dataset)
    obama = [item.image for item in manifest.items if item.identity == "obama"]
    assert split is not None and len(split.images) == 1 and split.images[0] in obama

    # A resumed run reads its recorded split back, even where the rule would now choose otherwise.
    other = next(name for name in obama if name != split.images[0])
    (run.root / HOLDOUT_FILE).write_text(json.dumps({"holdout": None, "images": [other]}))
    run.clear_cancel()
    from facestudio.training.train_fact import FACTTrainer

    trainer = FACTTrainer(run, config, manager=manager)
    try:
        trainer.setup()
        assert trainer.split.images == (other,)
        assert other not in {item.image for item in trainer.data.items}
        assert len(trainer.data) == len(manifest.items) - 1
        assert trainer.step == 2
    finally:
        trainer.close()


@pytest.mark.parametrize("value", ["-1", "x"])
def test_holdout_must_be_a_whole_number(value):
    from facestudio.errors import TrainingError

    with pytest.raises((SystemExit, TrainingError)):
        parse_args(["DATA", "--out", "RUN", "--holdout", value])


def test_damaged_split_and_evaluation_files_read_as_missing(tmp_path):
    from facestudio.training.evaluation import EVALUATION_FILE, read_evaluation

    every_json_type = ["null", "true", "0", "1.5", '"text"', "[]", "[1, 2]", "{}", '{"images": [1]}',
                       '{"images": ["a"], "holdout": "x"}', '{"images": ["a"], "holdout": true}', "", "{not json",
                       "\x00", "[" * 5000 + "]" * 5000]
    for text in every_json_type:
        (tmp_path / HOLDOUT_FILE).write_text(text)
        (tmp_path / EVALUATION_FILE).write_text(text)
        assert read_split(tmp_path) is None and read_evaluation(tmp_path) is None
    (tmp_path / HOLDOUT_FILE).write_text('{"holdout": null, "images": ["images/a.png"]}')
    assert read_split(tmp_path).images == ("images/a.png",)
