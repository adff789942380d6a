"""Every reader of a file the studio keeps on disk, fed malformed content of every JSON type: a damaged file is
skipped (or reads as damaged) with one sentence, the others keep working, and nothing raises anything else."""

from __future__ import annotations

import json

import pytest
from PIL import Image, PngImagePlugin

from facestudio.errors import FaceStudioError, InvalidRequestError, MetadataError

#: One value of every JSON type, and a few records of the right type with the wrong types inside.
EVERY_JSON_TYPE = ["null", "true", "0", "-1", "1.5", '"text"', "[]", "[1, 2]", "{}", '{"a": null}', "", "{not json",
                   "\x00", "[" * 5000 + "]" * 5000]


def test_identities_of_every_json_type_are_skipped_and_the_others_work(tmp_path):
    from facestudio.engine.identities import IDENTITY_FORMAT, IdentityStore

    store = IdentityStore(tmp_path)
    good = tmp_path / "identities" / "alex"
    good.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(good / "photo-01.png")
    (good / "identity.json").write_text(json.dumps({"format": IDENTITY_FORMAT, "name": "Alex",
                                                    "photos": [{"file": "photo-01.png"}]}))
    bad_records = [*EVERY_JSON_TYPE,
                   *(json.dumps({"format": IDENTITY_FORMAT, "name": name, "photos": photos}) for name, photos in [
                       (5, [{"file": "photo-01.png"}]), ("B", None), ("B", [{"file": 7}]), ("B", ["x"]),
                       ("B", {"file": "x"}), (None, []), ("B", [{"file": "a\x00b"}]), ("B", [{}])])]
    for number, text in enumerate(bad_records):
        folder = tmp_path / "identities" / f"bad-{number}"
        folder.mkdir()
        (folder / "identity.json").write_text(text)
    assert [identity.name for identity in store.list()] == ["Alex"]
    assert len(store.damaged()) == len(bad_records)
    with pytest.raises(InvalidRequestError, match="bad-1 is damaged"):
        store.get("bad-1")
    store.delete("bad-2")  # a damaged identity can be removed
    assert len(store.damaged()) == len(bad_records) - 1
    assert store.get("Alex").photos[0].name == "photo-01.png"


@pytest.mark.parametrize("text", [*EVERY_JSON_TYPE, '{"state": "running", "pid": "abc"}', '{"loss": "abc"}',
                                  '{"step": 1.5}', '{"pid": true}', '{"error": 5}', '{"state": "nonsense"}',
                                  '{"step": [1]}', '{"loss": {"a": 1}}', '{"started_at": "x"}'])
def test_a_damaged_status_reads_as_a_failed_run_and_signals_nothing(tmp_path, text):
    from facestudio.jobs.status import effective_status
    from facestudio.training.run import RunFolder, RunState

    folder = RunFolder(tmp_path)
    folder.status_path.write_text(text)
    status = folder.read_status()
    if status is not None and status.state == RunState.FAILED:
        assert "status.json is damaged" in status.error and str(tmp_path) not in status.error
    settled = effective_status(folder)  # decides live/dead from the pid: never crashes on a bad one
    assert settled.pid is None or (isinstance(settled.pid, int) and settled.pid > 0)


def test_a_zero_or_negative_pid_is_never_a_process(tmp_path):
    from facestudio.training.run import RunFolder

    folder = RunFolder(tmp_path)
    for pid in (0, -1):
        folder.status_path.write_text(json.dumps({"state": "running", "pid": pid}))
        assert folder.read_status().pid is None


def test_the_job_list_skips_damaged_jobs_and_shows_damaged_status(tmp_path):
    from facestudio.jobs import JobStore

    store = JobStore(tmp_path)
    root = tmp_path / "jobs"
    for number, text in enumerate(EVERY_JSON_TYPE):
        folder = root / f"20260101-00000{number % 10}-bad{number}"
        folder.mkdir(parents=True)
        (folder / "job.json").write_text(text)
    good = root / "20260101-000000-good"
    good.mkdir()
    (good / "job.json").write_text(json.dumps({"name": "good", "created_at": 1.0}))
    (good / "status.json").write_text('{"state": "running", "pid": "abc", "loss": "abc"}')
    for number, owner in enumerate([5, "", ["alice"], {"name": "alice"}, True]):  # a damaged owner: nobody's job
        folder = root / f"20260102-00000{number}-owner"
        folder.mkdir(parents=True)
        (folder / "job.json").write_text(json.dumps({"name": "owned", "created_at": 1.0, "owner": owner}))
    jobs = store.list()
    assert [job.name for job in jobs] == ["good"]
    assert store.effective_status(jobs[0]).state == "failed"


def test_metrics_with_damaged_lines_are_read_and_truncated(tmp_path):
    from facestudio.training.run import RunFolder

    folder = RunFolder(tmp_path)
    folder.metrics_path.write_text('{"step": 1, "loss": 0.5}\n[1]\n{"step": "abc"}\n{"step": 2, "loss": 0.4}\n'
                                   '{"step": 3, "loss": 0.3}\n')
    folder.truncate_metrics(2)
    assert [row["step"] for row in folder.read_metrics()] == [1, 2]
    folder.truncate_metrics(0)  # what a fresh start does
    assert folder.read_metrics() == []


@pytest.mark.parametrize("text", [*EVERY_JSON_TYPE, '{"name": "x", "prompt": "{prompt}", "thumbnail": "a\\u0000b"}',
                                  '{"name": "x", "prompt": "{prompt}", "lora": 5}',
                                  '{"name": "x", "prompt": "{prompt}", "steps": "abc"}',
                                  '{"name": "x", "prompt": "{prompt}", "steps": NaN}',
                                  '{"name": ["x"], "prompt": "{prompt}", "thumbnail": {"a": 1}}'])
def test_a_broken_preset_is_skipped_and_named_whatever_is_in_it(tmp_path, text):
    from facestudio.engine.presets import load_presets

    (tmp_path / "good.json").write_text('{"name": "Good", "prompt": "{prompt}, good"}')
    (tmp_path / "broken.json").write_text(text)
    presets, problems = load_presets(tmp_path)
    assert [preset.key for preset in presets] == ["good"]
    assert len(problems) == 1 and "broken.json" in problems[0] and str(tmp_path) not in problems[0]


def _png_with(tmp_path, text: str):
    info = PngImagePlugin.PngInfo()
    info.add_text("facestudio", text)
    path = tmp_path / "crafted.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize("text", [*EVERY_JSON_TYPE, "[" * 100_000 + "]" * 100_000, '"' + "x" * 300_000 + '"',
                                  '{"request": [], "seed": 1}', '{"request": {"prompt": 5}, "seed": "x"}',
                                  '{"request": null, "seed": null}', '{"format": "abc", "request": {}, "seed": 1}'])
def test_a_crafted_png_record_is_one_sentence(tmp_path, text):
    from facestudio.engine.metadata import GenerationRecord

    with pytest.raises(FaceStudioError) as caught:
        GenerationRecord.from_png(_png_with(tmp_path, text))
    assert isinstance(caught.value, MetadataError | InvalidRequestError)
    assert "crafted.png" in str(caught.value) or "request" in str(caught.value).lower()


def test_the_depth_of_json_is_measured_without_parsing():
    from facestudio.engine.metadata import json_depth

    assert json_depth('{"a": [1, {"b": "[[[["}]}') == 3
    assert json_depth("[" * 100_000) == 100_000
