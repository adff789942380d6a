"""The frozen encoders run once per dataset and model, not every step; only the adapter learns."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from facestudio.errors import TrainingError
from facestudio.training import RunState, create_run
from facestudio.training.data import sample_generator
from facestudio.training.encodings import FOLDER
from facestudio.training.train_fact import FACTTrainer, make_optimizer


def make_trainer(run_root: Path, config, manager) -> FACTTrainer:
    trainer = FACTTrainer(create_run(run_root, config, state=RunState.RUNNING), config, manager=manager)
    trainer.setup()
    return trainer


def resumed_adapter(run_root: Path, config, manager, checkpoint_at: int) -> dict[str, torch.Tensor]:
    """The adapter after `checkpoint_at` steps, a checkpoint, a new trainer resuming from it, and the rest of
    `config.steps`: compared with an uninterrupted run, it shows a resume loses nothing."""
    first = make_trainer(run_root, config, manager)
    try:
        while first.step < checkpoint_at:
            first.train_step()
        first._checkpoint()
    finally:
        first.close()
    second = FACTTrainer(first.run, config, manager=manager)
    try:
        second.setup()
        assert second.step == checkpoint_at
        while second.step < config.steps:
            second.train_step()
        return {k: v.clone() for k, v in second.models.adapter.state_dict().items()}
    finally:
        second.close()


def count_encoder_calls(monkeypatch) -> list[int]:
    """Count every call of any VAE encoder, CLIP text encoder or TransFace, whichever instance (the trainer loads
    them afresh each time it needs them)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel

    from facestudio.fact import TransFace

    calls = [0]
    for owner, name in ((AutoencoderKL, "encode"), (CLIPTextModel, "forward"), (TransFace, "forward")):
        original = getattr(owner, name)

        def counted(self, *args, _original=original, **kwargs):
            calls[0] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(owner, name, counted)
    return calls


@pytest.fixture
def own_dataset(tmp_path, tiny_dataset) -> Path:
    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, dataset, ignore=shutil.ignore_patterns(FOLDER))
    return dataset


def test_training_steps_never_call_the_frozen_encoders_and_the_cache_follows_the_vae(tmp_path, train_config,
                                                                                      manager, own_dataset,
                                                                                      tiny_studio, monkeypatch):
    config = train_config(dataset=str(own_dataset), steps=2)
    calls = count_encoder_calls(monkeypatch)
    trainer = make_trainer(tmp_path / "run", config, manager)
    try:
        assert calls[0] > 0 and trainer.models.encoders.loads == 1  # the empty cache was filled once
        assert not trainer.models.encoders.resident and manager.loaded() == []  # and released again
        calls[0] = 0
        trainer.train_step()
        trainer.train_step()
        assert calls[0] == 0
        first = trainer.encodings
    finally:
        trainer.close()
    cached = sorted((own_dataset / FOLDER).iterdir())
    assert len(cached) == 1

    # Another run on the same dataset and models reads the cache (same file, same numbers): the encoders are
    # loaded only to draw its samples, and released after them.
    again = make_trainer(tmp_path / "again", config.replace(sample_every=1, sample_seeds=(0,)), manager)
    try:
        assert again.models.encoders.loads == 0
        again.train_step()
        again._samples()
        assert again.models.encoders.loads == 1 and not again.models.encoders.resident
        assert calls[0] > 0  # the samples did encode their prompt and reference
    finally:
        again.close()
    assert sorted((own_dataset / FOLDER).iterdir()) == cached
    assert torch.equal(again.encodings.latent_mean, first.latent_mean)

    # An edited VAE file is another model: its encodings are computed again, under another key.
    base = tmp_path / "base"
    shutil.copytree(tiny_studio.base, base)
    vae_file = next((base / "vae").glob("*.safetensors"))
    weights = load_file(vae_file)
    weights = {name: tensor * 1.5 if "encoder" in name and tensor.ndim == 4 else tensor
               for name, tensor in weights.items()}
    save_file(weights, str(vae_file))
    edited = make_trainer(tmp_path / "edited", config.replace(base_model=str(base)), manager)
    edited.close()
    assert len(list((own_dataset / FOLDER).iterdir())) == 2
    assert not torch.allclose(edited.encodings.latent_mean, first.latent_mean)
    assert torch.equal(edited.encodings.face_features, first.face_features)  # TransFace did not change


def test_only_the_adapter_receives_gradients(tmp_path, train_config, manager, own_dataset):
    trainer = make_trainer(tmp_path / "run", train_config(dataset=str(own_dataset)), manager)
    try:
        generators = [sample_generator(0, i) for i in range(2)]
        batch = trainer.data.batch([0, 1], 0.0, generators)
        loss, _, _ = trainer._losses(batch, generators, 0.0)
        loss.backward()
        trainer.recorder.end()
        models = trainer.models
        adapter_ids = {id(p) for p in models.adapter.parameters()}
        frozen = [p for p in models.unet.parameters() if id(p) not in adapter_ids]
        assert frozen and not any(p.requires_grad or p.grad is not None for p in frozen)
        with models.encoders.loaded() as encoders:  # frozen whenever they are loaded
            for model in (encoders.vae, encoders.text_encoder, encoders.face_encoder):
                assert not any(p.requires_grad for p in model.parameters())
        trained = [p for p in models.adapter.parameters() if p.requires_grad]
        assert trained and all(p.grad is not None for p in trained)
    finally:
        trainer.close()


def test_adamw8bit_refuses_a_device_bitsandbytes_lacks(train_config):
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(TrainingError, match="adamw8bit runs on CUDA GPUs and the CPU, not on meta") as caught:
        make_optimizer(train_config(optimizer="adamw8bit"), params, torch.device("meta"))
    assert caught.value.field == "optimizer"


def test_adamw_runs_fused_on_the_cpu(train_config):
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = make_optimizer(train_config(), params, torch.device("cpu"))
    assert optimizer.defaults["fused"] is True  # in place: no temporaries the size of the moments


def test_adamw8bit_on_the_cpu_keeps_one_byte_moments_and_resumes_exactly(tmp_path, train_config, manager):
    """Four steps straight == two steps, a checkpoint, a new trainer and two more: the 8-bit state (codes, scales,
    quantile maps) survives the safetensors checkpoint bit for bit."""
    pytest.importorskip("bitsandbytes")
    config = train_config(steps=4, optimizer="adamw8bit", checkpoint_every=100, sample_every=0)
    straight = make_trainer(tmp_path / "straight", config, manager)
    try:
        while straight.step < 4:
            straight.train_step()
        moments = [state["state1"] for state in straight.optimizer.state.values() if "state1" in state]
        assert moments and any(m.dtype == torch.uint8 for m in moments)
        expected = {k: v.clone() for k, v in straight.models.adapter.state_dict().items()}
    finally:
        straight.close()
    resumed = resumed_adapter(tmp_path / "resumed", config, manager, checkpoint_at=2)
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)


def test_a_run_that_encodes_trains_like_a_run_that_reads_the_encodings(tmp_path, train_config, manager,
                                                                        own_dataset):
    """The first run computes and stores the encodings, the second reads them: the same adapter to the bit (it
    differed by 2.5e-5 when the first trained on its in-memory copy), so a resumed run continues the same run."""
    config = train_config(dataset=str(own_dataset), steps=3, checkpoint_every=100, sample_every=0)
    adapters = []
    for name in ("encodes", "reads"):
        trainer = make_trainer(tmp_path / name, config, manager)
        try:
            while trainer.step < 3:
                trainer.train_step()
            adapters.append({k: v.clone() for k, v in trainer.models.adapter.state_dict().items()})
        finally:
            trainer.close()
    assert list((own_dataset / FOLDER).glob("*.safetensors"))
    assert all(torch.equal(adapters[0][k], adapters[1][k]) for k in adapters[0])
