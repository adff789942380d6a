"""A run that starts from photos prepares them itself, as its first stage: progress (photo i of n) and the photo
report in the run folder, cancel between photos, a fresh start after an interrupted preparation, and none after a
finished one (the job tests and the studio's API test resume such a run mid-training)."""

from __future__ import annotations

import shutil

import pytest

from facestudio.errors import DatasetError
from facestudio.training import RunFolder, RunStage, RunState, create_run, read_config
from facestudio.training.train_fact import TrainArgs, dataset_ready, prepare_photos, run_training
from tests.face.images import noise


def photo_run(tmp_path, config, photos: dict) -> RunFolder:
    """A run (queued, like a job) over a folder of one person's photos: {file name: source path or image}."""
    person = tmp_path / "photos" / "alex"
    person.mkdir(parents=True)
    for name, source in photos.items():
        if hasattr(source, "save"):
            source.save(person / name)
        else:
            shutil.copy(source, person / name)
    run_root = tmp_path / "run"
    return create_run(run_root, config.replace(photos=str(person.parent), dataset=str(run_root / "dataset"),
                                               face_backend="mediapipe"))


def test_cancel_while_preparing_then_resume_prepares_from_scratch_once(tmp_path, train_config, faces_dir,
                                                                         training_home):
    run = photo_run(tmp_path, train_config(steps=4, checkpoint_every=2), {
        "a.jpg": faces_dir / "obama.jpg", "b.jpg": faces_dir / "obama2.jpg", "c.jpg": faces_dir / "biden.jpg",
        "d.png": faces_dir / "astronaut.png"})
    queued = run.read_status()
    assert (queued.state, queued.stage, queued.total) == (RunState.QUEUED, RunStage.PREPARING, 0)
    seen: list[tuple] = []

    def watch(cancel_at: tuple):
        def on_progress(status):
            seen.append((status.state, status.stage, status.step, status.total))
            if (status.stage, status.step) == cancel_at:
                run.request_cancel()  # what `jobs cancel` and the Train tab do
        return on_progress

    stopped = run_training(TrainArgs(run, None), on_progress=watch((RunStage.PREPARING, 1)))
    assert (stopped.state, stopped.stage, stopped.step, stopped.total) == (RunState.CANCELLED, RunStage.PREPARING, 1, 4)
    assert seen == [(RunState.RUNNING, RunStage.PREPARING, 0, 0), (RunState.RUNNING, RunStage.PREPARING, 1, 4),
                    (RunState.CANCELLED, RunStage.PREPARING, 1, 4)]
    assert run.read_status().state == RunState.CANCELLED
    assert not dataset_ready(run.dataset_dir)  # half a preparation is no dataset
    partial = run.read_prepare_report()
    assert partial["complete"] is False and [item["source"] for item in partial["items"]] == ["alex/a.jpg"]

    run.clear_cancel()
    seen.clear()
    done = run_training(TrainArgs(run, None), on_progress=watch((None, None)))
    assert (done.state, done.stage, done.step) == (RunState.DONE, RunStage.TRAINING, 4)
    assert [step for _, stage, step, _ in seen if stage == RunStage.PREPARING] == [0, 1, 2, 3, 4]  # from scratch
    assert (RunState.RUNNING, RunStage.TRAINING, 1, 4) in seen  # then steps of 4, no longer photos
    report = run.read_prepare_report()
    assert (report["complete"], report["photos"], report["kept"], report["rejected"]) == (True, 4, 3, 1)
    assert {item["source"]: item["reason"] for item in report["items"]} == {
        "alex/a.jpg": None, "alex/b.jpg": None, "alex/c.jpg": None, "alex/d.png": "too_small"}
    assert [row["step"] for row in run.read_metrics()] == [1, 2, 3, 4]
    assert run.adapter_path.is_file()

    manifest = run.dataset_dir / "manifest.json"
    prepared_at = manifest.stat().st_mtime_ns
    assert prepare_photos(run, read_config(run), lambda: False) is None  # a finished preparation is not repeated
    assert manifest.stat().st_mtime_ns == prepared_at and run.read_status().state == RunState.DONE


def test_no_usable_photo_fails_the_run_with_its_report(tmp_path, train_config, training_home):
    run = photo_run(tmp_path, train_config(), {"wall.png": noise((160, 160), seed=1), "sky.png": noise((96, 96), seed=2)})
    with pytest.raises(DatasetError, match=r"None of the 2 photo\(s\) can be used for training .*prepare\.json lists"):
        run_training(TrainArgs(run, None))
    failed = run.read_status()
    assert (failed.state, failed.stage, failed.step, failed.total) == (RunState.FAILED, RunStage.PREPARING, 2, 2)
    assert "no face found" in failed.error
    report = run.read_prepare_report()
    assert report["complete"] and report["kept"] == 0
    assert [item["reason"] for item in report["items"]] == ["no_face", "no_face"]
    assert not run.dataset_dir.exists()


def test_a_dataset_completed_before_its_report_gets_the_report_back(tmp_path, train_config, tiny_dataset):
    """Killed between writing the dataset and prepare.json: the resumed run takes the report from the dataset."""
    run = photo_run(tmp_path, train_config(), {})
    shutil.copytree(tiny_dataset, run.dataset_dir)
    assert prepare_photos(run, read_config(run), lambda: False) is None
    report = run.read_prepare_report()
    assert report["complete"] and report["kept"] == 3
    assert run.read_status().state == RunState.QUEUED  # nothing to do, nothing written
