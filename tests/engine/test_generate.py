"""Text-to-image with identity over tiny random SD1.5-topology models: the properties a user relies on."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from facestudio.engine import GenerationRecord, ModelChoice, read_png_record
from facestudio.errors import (
    FaceNotFoundError,
    ImageLoadError,
    InsufficientVRAMError,
    InvalidRequestError,
    MetadataError,
)
from tests.engine.conftest import make_manager, pixels
from tests.face.images import noise


def run(engine, request, **kwargs):
    return engine.generate(request, **kwargs).images


def test_same_seed_same_image_other_seed_differs(engine, tiny_request):
    first = run(engine, tiny_request(seed=11))[0]
    again = run(engine, tiny_request(seed=11))[0]
    other = run(engine, tiny_request(seed=12))[0]
    assert first.seed == 11 and first.image.size == (256, 256)
    assert np.array_equal(pixels(first.image), pixels(again.image))
    assert np.abs(pixels(first.image) - pixels(other.image)).mean() > 1.0


def test_random_seed_is_reported_and_images_use_consecutive_seeds(engine, tiny_request):
    images = run(engine, tiny_request(seed=None, num_images=2))
    assert images[1].seed == images[0].seed + 1
    alone = run(engine, tiny_request(seed=images[1].seed))[0]
    assert np.array_equal(pixels(alone.image), pixels(images[1].image)), "image i must be reproducible on its own"


def test_other_reference_face_changes_the_image_only_when_strength_is_above_zero(engine, tiny_request, faces_dir):
    biden = [str(faces_dir / "biden.jpg")]
    with_obama = run(engine, tiny_request(face_strength=0.8))[0]
    with_biden = run(engine, tiny_request(face_strength=0.8, faces=biden))[0]
    assert np.abs(pixels(with_obama.image) - pixels(with_biden.image)).mean() > 0.5
    off_obama = run(engine, tiny_request(face_strength=0.0))[0]
    off_biden = run(engine, tiny_request(face_strength=0.0, faces=biden))[0]
    assert np.array_equal(pixels(off_obama.image), pixels(off_biden.image))


def test_delaying_the_face_for_all_steps_equals_strength_zero(engine, tiny_request):
    delayed = run(engine, tiny_request(face_strength=0.8, face_delay_steps=3))[0]
    off = run(engine, tiny_request(face_strength=0.0))[0]
    partly = run(engine, tiny_request(face_strength=0.8, face_delay_steps=1))[0]
    full = run(engine, tiny_request(face_strength=0.8))[0]
    assert np.array_equal(pixels(delayed.image), pixels(off.image))
    assert not np.array_equal(pixels(partly.image), pixels(full.image))
    assert engine.manager.adapted_base(*_models(tiny_request())).adapter.scale == 0.8, "strength restored after"


def _models(request):
    return request.models.base_model, request.models.adapter


def test_face_cfg_gives_the_negative_branch_the_no_face_embedding(engine, tiny_request):
    with_cfg = run(engine, tiny_request(face_strength=0.8))[0]
    without = run(engine, tiny_request(face_strength=0.8, face_cfg=False))[0]
    assert not np.array_equal(pixels(with_cfg.image), pixels(without.image))


def test_several_reference_photos_of_one_person(engine, tiny_request, faces_dir):
    two = tiny_request(faces=[str(faces_dir / "obama.jpg"), str(faces_dir / "obama2.jpg")])
    result = engine.generate(two)
    assert result.warnings == []
    record = result.images[0].record
    assert [r["name"] for r in record.references] == ["obama.jpg", "obama2.jpg"]
    one = run(engine, tiny_request(face_strength=0.5))[0]
    assert not np.array_equal(pixels(one.image), pixels(result.images[0].image))


def test_a_reference_of_another_person_is_warned_about(engine, tiny_request, faces_dir):
    mixed = tiny_request(faces=[str(faces_dir / "obama.jpg"), str(faces_dir / "biden.jpg")])
    result = engine.generate(mixed)
    assert len(result.warnings) == 1 and "biden.jpg" in result.warnings[0]


def kept_in_home(engine, tiny_studio, faces_dir, tiny_request, **overrides):
    """The tiny request with its models and photo where the studio keeps files (linked/copied into the engine's
    home), as a studio's saved identity and model cache are."""
    import os

    from facestudio.engine import ModelChoice

    home = engine.manager.settings.home
    kept = home / "local"
    kept.mkdir(exist_ok=True)
    links = {}
    for name in ("base", "adapter", "face_encoder"):
        link = kept / name
        if not link.exists():
            os.symlink(getattr(tiny_studio, name), link)
        links[name] = str(link)
    photo = home / "identities" / "obama" / "photo-01.jpg"
    photo.parent.mkdir(parents=True, exist_ok=True)
    photo.write_bytes((faces_dir / "obama.jpg").read_bytes())
    models = ModelChoice(links["base"], links["adapter"], links["face_encoder"])
    return tiny_request(faces=[str(photo)], models=models, **overrides)


def test_png_carries_parameters_and_regenerates_bit_for_bit(engine, tiny_studio, faces_dir, tiny_request, tmp_path):
    request = kept_in_home(engine, tiny_studio, faces_dir, tiny_request, seed=21, scheduler="Euler a",
                           prompt="portrait with a red scarf", face_strength=0.7)
    made = engine.generate(request, out_dir=tmp_path).images[0]
    assert made.path.parent == tmp_path and made.path.suffix == ".png"
    raw = read_png_record(made.path)
    assert raw["seed"] == 21 and raw["request"]["prompt"] == "portrait with a red scarf"  # format 1 JSON layout
    record = GenerationRecord.from_png(made.path)
    home = engine.manager.settings.home
    assert record == made.record.portable(home)
    found = GenerationRecord.from_png(made.path, home=home)  # the files named relative to the home, found again
    assert found.request == made.record.request and found.references == made.record.references
    assert record.seed == 21 and record.request.prompt == "portrait with a red scarf"
    assert record.request.scheduler == "euler-a" and record.request.face_strength == 0.7
    for kind in ("base_model", "fact_adapter", "face_encoder"):
        assert len(record.models[kind]["sha256"]) == 64
    assert len(record.references[0]["sha256"]) == 64
    assert record.references[0]["path"] == "identities/obama/photo-01.jpg"
    assert record.request.models.base_model == "local/base" and record.models["base_model"]["spec"] == "local/base"
    again = engine.regenerate(made.path, out_dir=tmp_path).images[0]
    assert again.path != made.path, "never overwrite"
    assert np.array_equal(pixels(again.image), pixels(made.image))


def test_a_png_names_no_folder_of_the_machine(engine, tiny_studio, tiny_request, tmp_path, faces_dir):
    photo = tmp_path / "private-folder" / "me.jpg"
    photo.parent.mkdir()
    photo.write_bytes((faces_dir / "obama.jpg").read_bytes())
    made = engine.generate(tiny_request(faces=[str(photo)]), out_dir=tmp_path).images[0]
    text = made.path.read_bytes().decode("latin-1")
    for folder in (tmp_path, engine.manager.settings.home, tiny_studio.base.parent, faces_dir):
        assert str(folder) not in text and str(Path(folder).resolve()) not in text
    record = GenerationRecord.from_png(made.path)
    assert record.request.faces == ("me.jpg",) and record.references[0]["path"] == "me.jpg"
    assert all(not Path(entry["path"]).is_absolute() for entry in record.models.values() if entry)


def test_regenerate_refuses_a_changed_reference_photo(engine, tiny_studio, tiny_request, tmp_path, faces_dir):
    photo = tmp_path / "me.jpg"
    photo.write_bytes((faces_dir / "obama.jpg").read_bytes())
    made = engine.generate(tiny_request(faces=[str(photo)]), out_dir=tmp_path).images[0]
    photo.write_bytes((faces_dir / "obama2.jpg").read_bytes())
    with pytest.raises(InvalidRequestError, match=r"me.jpg differs"):
        engine.regenerate(made.path, faces=[str(photo)])
    with pytest.raises(InvalidRequestError, match=r"me.jpg \(used to make .*\) is missing"):
        engine.regenerate(made.path)  # kept outside the home: the PNG names it only
    moved = tmp_path / "moved.jpg"
    moved.write_bytes((faces_dir / "obama.jpg").read_bytes())
    models = ModelChoice(str(tiny_studio.base), str(tiny_studio.adapter), str(tiny_studio.face_encoder))
    again = engine.regenerate(made.path, faces=[str(moved)], models=models).images[0]
    assert np.array_equal(pixels(again.image), pixels(made.image))


def test_from_png_refuses_a_png_without_parameters(engine, tmp_path):
    plain = tmp_path / "plain.png"
    noise((64, 64)).save(plain)
    with pytest.raises(MetadataError, match=r"plain.png carries no FaceStudio"):
        engine.regenerate(plain)


@pytest.mark.parametrize("scheduler", ["Euler a", "DPM++ 2M Karras", "DDIM", "PNDM", "UniPC"])
def test_every_offered_scheduler_runs(engine, tiny_request, scheduler):
    image = run(engine, tiny_request(scheduler=scheduler, steps=2))[0]
    assert image.record.scheduler_title == scheduler
    assert np.isfinite(pixels(image.image)).all() and pixels(image.image).std() > 0


def test_style_lora_changes_the_image_and_unloads_exactly(engine, tiny_request, tiny_studio):
    plain = run(engine, tiny_request())[0]
    styled = run(engine, tiny_request(lora=str(tiny_studio.lora), lora_scale=1.0))[0]
    zero = run(engine, tiny_request(lora=str(tiny_studio.lora), lora_scale=0.0))[0]
    after = run(engine, tiny_request())[0]
    assert np.abs(pixels(plain.image) - pixels(styled.image)).mean() > 0.5
    assert np.array_equal(pixels(zero.image), pixels(plain.image))
    assert np.array_equal(pixels(after.image), pixels(plain.image))
    assert styled.record.models["lora"]["sha256"] and plain.record.models["lora"] is None


def test_lora_that_is_not_a_lora_is_refused(engine, tiny_request, tiny_studio):
    from facestudio.errors import CheckpointError

    with pytest.raises(CheckpointError, match="is not a LoRA"):
        run(engine, tiny_request(lora=str(tiny_studio.face_encoder)))
    assert np.isfinite(pixels(run(engine, tiny_request())[0].image)).all()


def test_pose_controlnet_changes_the_image_and_sees_text_tokens_only(engine, tiny_request, faces_dir):
    plain = run(engine, tiny_request())[0]
    posed = run(engine, tiny_request(pose=str(faces_dir / "biden.jpg")))[0]
    assert np.abs(pixels(plain.image) - pixels(posed.image)).mean() > 0.5
    assert posed.record.pose_image.sha256
    controlnet, _ = engine.manager.controlnet(tiny_request().models.controlnet)
    adapter = engine.manager.adapted_base(*_models(tiny_request())).adapter
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=generator)
    text = torch.randn(1, 5, 24, generator=generator)
    face = torch.randn(1, adapter.num_face_tokens, 24, generator=generator)
    cond = torch.rand(1, 3, 64, 64, generator=generator)
    with torch.no_grad():
        with_face = controlnet(sample, 10, torch.cat([text, face], 1), cond, return_dict=False)
        adapter.set_num_face_tokens(0)
        text_only = controlnet(sample, 10, text, cond, return_dict=False)
    for a, b in zip(with_face[0], text_only[0], strict=True):
        torch.testing.assert_close(a, b)


def test_reference_without_a_face_is_a_clear_error(engine, tiny_request, tmp_path):
    blank = tmp_path / "wall.png"
    noise((320, 240)).save(blank)
    with pytest.raises(FaceNotFoundError, match=r"No face found in wall.png"):
        engine.generate(tiny_request(faces=[str(blank)]))
    with pytest.raises(ImageLoadError, match=r"missing.jpg"):
        engine.generate(tiny_request(faces=[str(tmp_path / "missing.jpg")]))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("width", 300, "multiple of 8"), ("height", 2048, "from 256 to 1024"), ("steps", 0, "steps"),
     ("face_strength", 3.0, "face_strength"), ("scheduler", "warp", "Unknown scheduler"),
     ("prompt", "  ", "prompt is empty"), ("faces", [], "at least one reference"),
     ("faces", ["a.jpg"] * 9, "at most 8"), ("face_delay_steps", 5, "face_delay_steps")],
)
def test_bad_requests_are_refused_before_loading(engine, tiny_request, field, value, message):
    loads = dict(engine.manager.load_count)
    with pytest.raises(InvalidRequestError, match=message) as refused:
        engine.generate(tiny_request(**{field: value}))
    assert refused.value.field == field
    assert engine.manager.load_count == loads


def test_the_engine_never_changes_the_callers_request(engine, tiny_request):
    request = tiny_request(seed=None, scheduler="euler_a", num_images=2, steps=2)
    before = dataclasses.replace(request)
    result = engine.generate(request)
    engine.compare_strengths(request, [0.0, 0.5])
    assert request == before and request.seed is None and request.num_images == 2 and request.scheduler == "euler_a"
    # ...while each image's record names what was really used: its own seed, one image, the resolved models.
    records = [image.record for image in result.images]
    assert [r.request.seed for r in records] == [result.seed, result.seed + 1]
    assert {r.request.num_images for r in records} == {1} and {r.request.scheduler for r in records} == {"euler-a"}
    assert records[0].request.models.base_model == records[0].models["base_model"]["spec"]


def test_no_attention_kwargs_warning_from_generation_with_pose(engine, tiny_request, faces_dir, monkeypatch):
    from diffusers.models import attention_processor

    warnings = []
    monkeypatch.setattr(attention_processor.logger, "warning", lambda msg, *a, **k: warnings.append(msg % a))
    run(engine, tiny_request(pose=str(faces_dir / "biden.jpg"), face_delay_steps=1))
    assert not [w for w in warnings if "not expected" in w]


def test_out_of_memory_is_reported_and_the_engine_recovers(engine, tiny_request, monkeypatch):
    studio = engine.manager.adapted_base(*_models(tiny_request()))
    unet = studio.unet

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(unet, "forward", exhausted)
    with pytest.raises(InsufficientVRAMError, match="try `low_vram`") as refused:
        engine.generate(tiny_request())
    assert refused.value.field == "low_vram" and "--low-vram" in refused.value.worded("--low-vram")
    monkeypatch.undo()
    assert engine.manager.gpu_lock.acquire(blocking=False), "the GPU lock must be released"
    engine.manager.gpu_lock.release()
    assert run(engine, tiny_request())[0].image.size == (256, 256)


def test_stop_request_interrupts_and_keeps_finished_images(engine, tiny_request):
    steps_seen = []

    def on_step(progress):
        steps_seen.append((progress.image, progress.step))

    result = engine.generate(tiny_request(num_images=3), on_step=on_step,
                             should_stop=lambda: len(steps_seen) >= 4)
    assert result.cancelled
    assert len(result.images) == 1, "the first image finished (3 steps) before the stop at step 1 of image 2"
    assert steps_seen[-1] == (1, 1)


def test_single_file_checkpoint_loads_and_matches_the_folder(tiny_studio, tiny_request, tmp_path):
    from facestudio.engine import Engine
    from tests.engine.ldm_checkpoint import write_ldm_single_file

    single = write_ldm_single_file(tiny_studio.base, tmp_path / "tiny-sd15.safetensors")
    manager = make_manager(tiny_studio, tmp_path / "home")
    engine = Engine(manager)
    from_file = run(engine, tiny_request(models=_with_base(tiny_request(), str(single))))[0]
    from_folder = run(engine, tiny_request())[0]
    assert manager.load_count["base_model"] == 2
    assert np.array_equal(pixels(from_file.image), pixels(from_folder.image))
    assert from_file.record.models["base_model"]["path"] == str(single)
    manager.unload()


def _with_base(request, base):
    from facestudio.engine import ModelChoice

    models = request.models
    return ModelChoice(base, models.adapter, models.face_encoder, models.controlnet)


def test_models_load_once_under_concurrent_requests_and_unload_frees(tiny_studio, tiny_request, tmp_path):
    manager = make_manager(tiny_studio, tmp_path / "home")
    results, errors = [], []

    def load():
        try:
            results.append(manager.adapted_base(*_models(tiny_request())))
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert manager.load_count["base_model"] == 1 and all(r is results[0] for r in results)
    assert any(name.startswith("base_model:") for name in manager.loaded())
    unloaded = manager.unload()
    assert any(name.startswith("base_model:") for name in unloaded) and manager.loaded() == []
    manager.adapted_base(*_models(tiny_request()))
    assert manager.load_count["base_model"] == 2
    manager.unload()


def test_nothing_is_loaded_until_asked(tiny_studio, tmp_path):
    manager = make_manager(tiny_studio, tmp_path / "home")
    assert manager.loaded() == [] and manager.load_count == {}


def test_sliced_attention_set_before_fact_gives_the_same_image(tiny_studio, tiny_request, engine, tmp_path):
    from facestudio.engine import Engine

    manager = make_manager(tiny_studio, tmp_path / "home", attention="sliced")
    sliced = run(Engine(manager), tiny_request(face_strength=0.8))[0]
    default = run(engine, tiny_request(face_strength=0.8))[0]
    assert np.abs(pixels(sliced.image) - pixels(default.image)).max() <= 2
    processors = manager.adapted_base(*_models(tiny_request())).unet.attn_processors
    assert any(type(p).__name__ == "GatedFaceAttnProcessor" and type(p.base_processor).__name__ ==
               "SlicedAttnProcessor" for p in processors.values())
    manager.unload()


@pytest.mark.parametrize(("strengths", "message"), [([0.5], "Compare 2 to 8"), ([0.1] * 9, "Compare 2 to 8"),
                                                    ([0.2, 2.5], "from 0 to 2"), ([0.2, float("nan")], "from 0 to 2")])
def test_compare_strengths_refuses_bad_lists_before_loading(engine, tiny_request, strengths, message):
    loads = dict(engine.manager.load_count)
    with pytest.raises(InvalidRequestError, match=message):
        engine.compare_strengths(tiny_request(), strengths)
    assert engine.manager.load_count == loads


def test_compare_strengths_keeps_the_seed_and_matches_single_generations(engine, tiny_request):
    result = engine.compare_strengths(tiny_request(seed=9), [0.0, 1.0])
    assert [image.seed for image in result.images] == [9, 9]
    assert [image.record.request.face_strength for image in result.images] == [0.0, 1.0]
    single = engine.generate(tiny_request(seed=9, face_strength=1.0)).images[0]
    assert np.array_equal(pixels(single.image), pixels(result.images[1].image))
    assert not np.array_equal(pixels(result.images[0].image), pixels(result.images[1].image))
