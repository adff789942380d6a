"""Requests and records as data: frozen, checked without being changed, defaults and bounds in one place, and the
typed PNG record round-tripping the JSON layout older PNGs carry."""

from __future__ import annotations

import dataclasses

import pytest

from facestudio.engine.metadata import FileDigest, GenerationRecord
from facestudio.engine.requests import (
    GenerateRequest,
    InpaintRequest,
    ModelChoice,
    field_bounds,
    field_default,
)
from facestudio.errors import FaceStudioError, InvalidRequestError
from facestudio.face.identity import Similarity


def test_requests_are_frozen_and_checking_returns_a_normalised_copy():
    request = GenerateRequest(faces=["a.jpg"], prompt="p", scheduler="euler_a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.steps = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.models.base_model = "x"  # type: ignore[misc]
    checked = request.checked()
    assert checked.scheduler == "euler-a" and request.scheduler == "euler_a"
    assert request.faces == ("a.jpg",) and isinstance(checked.faces, tuple)


def test_defaults_and_bounds_come_from_the_fields():
    assert field_default(GenerateRequest, "steps") == GenerateRequest(faces=["a"], prompt="p").steps == 30
    assert field_default(InpaintRequest, "face_strength") == 0.55 != field_default(GenerateRequest, "face_strength")
    assert field_default(GenerateRequest, "models") == ModelChoice()
    assert field_bounds(GenerateRequest, "steps") == (1, 150)
    low, high = field_bounds(InpaintRequest, "denoise")
    for value, ok in ((low, True), (high, True), (low - 0.001, False), (high + 0.5, False)):
        request = InpaintRequest(faces=["a"], prompt="p", image="t.png", denoise=value)
        if ok:
            request.checked()
        else:
            with pytest.raises(InvalidRequestError, match="denoise"):
                request.checked()


@pytest.mark.parametrize(("changes", "field"), [
    ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"cfg": float("inf")}, "cfg"), ({"seed": -1}, "seed"),
    ({"width": 260}, "width"), ({"faces": []}, "faces"), ({"prompt": " "}, "prompt"), ({"pose_mode": "x"}, "pose_mode"),
    ({"face_delay_steps": 31}, "face_delay_steps"), ({"scheduler": "warp"}, "scheduler"), ({"num_images": True}, "num_images"),
])
def test_each_bad_value_names_its_field(changes, field):
    with pytest.raises(InvalidRequestError) as refused:
        GenerateRequest(**{"faces": ["a.jpg"], "prompt": "p", **changes}).checked()
    assert refused.value.field == field
    assert "--" not in str(refused.value), "library messages never name a command-line flag"


def test_a_user_error_is_not_a_value_error_and_each_front_words_the_field():
    err = InvalidRequestError("`steps` must be a whole number from 1 to 150; got 0.", field="steps")
    assert not isinstance(err, ValueError) and isinstance(err, FaceStudioError)
    assert err.worded("--steps") == "--steps must be a whole number from 1 to 150; got 0."
    assert err.worded("Steps") == "Steps must be a whole number from 1 to 150; got 0."
    hint = InvalidRequestError("Give at least one reference photo of the face.", field="faces")
    assert hint.worded("--face") == "Give at least one reference photo of the face (--face)."
    assert FaceStudioError("No field here.").worded("--x") == "No field here."


def test_record_round_trips_the_format_1_layout():
    request = InpaintRequest(faces=["a.jpg", "b.jpg"], prompt="p", image="t.png", seed=5, mask="head",
                             models=ModelChoice("base", "adapter", "enc", None))
    record = GenerationRecord(
        request=request, image_index=0, width=640, height=480, scheduler_title="Euler a",
        models={"base_model": {"spec": "base", "path": "/m/base", "sha256": "0" * 64}, "lora": None},
        references=({"name": "a.jpg", "path": "/p/a.jpg", "sha256": "1" * 64},), device="cpu", dtype="fp32",
        similarity=Similarity(0.5, True, "dlib", 0.4), template=FileDigest("/p/t.png", "2" * 64),
        crop_box=(1, 2, 3, 4), working_size=(256, 256), template_face_bbox=(1.5, 2.0, 3.0, 4.0))
    data = record.to_dict()
    assert data["seed"] == 5 and data["request"]["mode"] == "inpaint" and data["request"]["faces"] == ["a.jpg", "b.jpg"]
    assert data["crop_box"] == [1, 2, 3, 4] and data["template"] == {"path": "/p/t.png", "sha256": "2" * 64}
    again = GenerationRecord.from_dict(data)
    assert again == record and isinstance(again.to_request(), InpaintRequest)
    from facestudio.errors import MetadataError

    with pytest.raises(MetadataError, match=r"x\.png has damaged"):
        GenerationRecord.from_dict({**data, "width": "wide"}, "x.png")
