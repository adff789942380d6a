"""FAIR training of the FACT adapter (FACT.md §7), on accelerate, following diffusers' training-script conventions.

Frozen: VAE, text encoder, UNet, TransFace (cast to the mixed-precision dtype, except TransFace, which FACT runs in
float32). Trainable: the resampler and the 16 face layers (or the face layers only), kept in float32. Loss: the
noise-prediction MSE plus `fair_weight` x FAIR, FAIR computed from each face layer's actual increment (see
`fair.py`). Face condition drop (the "no face" tokens) and shuffle (another photo of the same person), with the
shuffle probability following the curriculum (`TrainConfig.shuffle_probability`).

Run it as `python -m facestudio train DATASET --out RUN`, as a job (`facestudio.jobs`), or on several processes with
`torchrun --nproc_per_node N -m facestudio.training.train_fact DATASET --out RUN` (or `accelerate launch`): every
sample's random draws follow from the seed and its global position (`data.sample_generator`), so N processes with
batch B train like one process with batch N x B. The frozen encoders' outputs are computed once per dataset and
model (`encodings.py`), not at every step, and the encoders stay unloaded during the steps (`FrozenEncoders`).
`--resume RUN` continues from the last checkpoint and reaches the same weights as an uninterrupted run. A run that
starts from photos (a studio job, `TrainConfig.photos`) first prepares them into its dataset (`prepare_photos`), in
this same process. A finished run that held photos out (`holdout.py`) compares its adapter with the one it started
from on them (`evaluation.py`, RUN/evaluation.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from facestudio.config import DEFAULT_INSIGHTFACE_ROOT, DEFAULT_MAX_PIXELS, StudioSettings
from facestudio.errors import DatasetError, FaceStudioError, TrainingError
from facestudio.files import write_atomic
from facestudio.text import format_duration
from facestudio.training.arguments import TrainArgs, add_train_arguments, train_args_from_namespace
from facestudio.training.checkpoint import TrainingState, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from facestudio.training.config import INIT_SCRATCH, INSTALL_8BIT, TrainConfig, create_run, read_config
from facestudio.training.cpu_memory import keep_freed_memory
from facestudio.training.data import sample_generator
from facestudio.training.encodings import FOLDER as ENCODINGS_FOLDER
from facestudio.training.encodings import Encodings, cache_key, encode_dataset, load_encodings, save_encodings
from facestudio.training.fused_backward import StepInBackward
from facestudio.training.holdout import HoldoutSplit, choose_holdout, read_split, write_split
from facestudio.training.run import RunFolder, RunStage, RunState, RunStatus

if TYPE_CHECKING:  # torch-heavy; imported where the models load
    from facestudio.engine.manager import EngineSettings, ModelManager
    from facestudio.fact import FACTAdapter
    from facestudio.training.dataset import DatasetManifest

logger = logging.getLogger(__name__)

#: The run gives up after this many optimizer steps in a row with a non-finite loss (fp16 overflow that the
#: gradient scaler cannot absorb, or a learning rate that is far too high).
MAX_NONFINITE_STEPS = 5
#: At most one progress line in the log per this many seconds (checkpoints and the end are always logged).
LOG_EVERY_SECONDS = 10.0
#: status.json is rewritten at most this often while training (state changes are written at once).
STATUS_EVERY_SECONDS = 0.5


def parse_args(argv: Sequence[str] | None = None) -> TrainArgs:
    parser = argparse.ArgumentParser(prog="python -m facestudio.training.train_fact",
                                     description="Train the FACT adapter with FAIR on a prepared dataset.")
    add_train_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="debug logs and tracebacks")
    args = parser.parse_args(argv)
    return train_args_from_namespace(args)


# -- models ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedEncoders:
    """The frozen encoders while they are loaded (see `FrozenEncoders.loaded`)."""

    vae: nn.Module
    text_encoder: nn.Module
    face_encoder: nn.Module


class FrozenEncoders:
    """The VAE, the text encoder and TransFace of a run, resident only inside `loaded()`.

    Training steps read their outputs from the dataset's encodings (`encodings.py`), so keeping them loaded would
    only hold memory (about 1 GB in float32 at SD1.5 size, beside a UNet of 3.4 GB): they are loaded to encode the
    items the cache lacks and to draw samples, and released (off the device and out of memory) right after.
    """

    def __init__(self, load: Callable[[], LoadedEncoders], release: Callable[[], None]):
        self._load, self._release = load, release
        self._current: LoadedEncoders | None = None
        #: How many times they were loaded (a run with a filled cache and no samples loads them never).
        self.loads = 0

    @property
    def resident(self) -> bool:
        return self._current is not None

    @contextmanager
    def loaded(self) -> Iterator[LoadedEncoders]:
        if self._current is not None:  # nested use keeps the outer load
            yield self._current
            return
        self._current = self._load()
        self.loads += 1
        try:
            yield self._current
        finally:
            self._current = None
            self._release()


@dataclass
class TrainingModels:
    """The frozen UNet, the adapter being trained, the frozen encoders (loaded on demand) and what the run needs to
    know about them."""

    unet: nn.Module
    tokenizer: Any
    encoders: FrozenEncoders
    adapter: FACTAdapter
    noise_scheduler: Any
    scheduler_config: dict
    base_label: str
    init_label: str
    #: The VAE's latent scale, read from its config (the VAE itself is not loaded during steps).
    vae_scaling_factor: float = 0.18215
    #: SHA-256 of the base model and the face encoder files: the key of the dataset's cached encodings.
    model_hashes: tuple[str, ...] = ()


def model_manager(settings: StudioSettings):
    """The model manager a training process locates its models with: the studio's home, offline flag and image
    limit, loading on the CPU (the trainer moves each model where it trains)."""
    from facestudio.engine import EngineSettings, ModelManager, select_device

    return ModelManager(EngineSettings.from_settings(settings, placement=select_device("cpu")))


def load_models(config: TrainConfig, device: torch.device, weight_dtype: torch.dtype,
                manager: ModelManager | None = None) -> TrainingModels:
    """Locate (downloading if needed) and load the base model's UNet and the starting adapter; the VAE, text encoder
    and TransFace are loaded only inside `models.encoders.loaded()`. Without a `manager`, one over the default
    settings (`StudioSettings()`) is made."""
    import diffusers
    from diffusers import AutoencoderKL, DDPMScheduler

    from facestudio.engine.devices import free_accelerator_memory
    from facestudio.engine.manager import load_base_pipeline
    from facestudio.fact import FACTAdapter, ResamplerConfig

    manager = manager or model_manager(StudioSettings())
    base_source = manager.source("base_model", config.base_model)
    base_path, config_path = manager.locate_base(base_source)
    diffusers.utils.logging.disable_progress_bar()  # the run reports its own progress
    pipe = load_base_pipeline(base_path, weight_dtype, config_path, without=("vae", "text_encoder"))
    unet = pipe.unet.requires_grad_(False).eval().to(device)
    vae_config = AutoencoderKL.load_config(str(config_path or base_path), subfolder="vae")
    # Loaded once here to check that it fits the adapter (and for its hash), then released until needed.
    face_encoder, face_file = manager.face_encoder(config.face_encoder)
    face_dim = face_encoder.config.embed_dim
    del face_encoder
    manager.unload("face_encoder")

    def load_encoders() -> LoadedEncoders:
        parts = load_base_pipeline(base_path, weight_dtype, config_path, without=("unet",))
        transface, _ = manager.face_encoder(config.face_encoder)
        return LoadedEncoders(parts.vae.requires_grad_(False).eval().to(device),
                              parts.text_encoder.requires_grad_(False).eval().to(device),
                              transface.to(device).float().eval().requires_grad_(False))

    def release_encoders() -> None:
        manager.unload("face_encoder")
        free_accelerator_memory()

    if config.init == INIT_SCRATCH:
        resampler = ResamplerConfig(embedding_dim=face_dim, output_dim=unet.config.cross_attention_dim)
        torch.manual_seed(config.seed)
        adapter = FACTAdapter.for_unet(unet, resampler, device=device, dtype=torch.float32,
                                       pass_through_other_layers=True)
        init_label = INIT_SCRATCH
    else:
        init_source = manager.adapter_source(base_source, None if config.init == "default" else config.init)
        adapter = FACTAdapter.from_checkpoint(manager.locate(init_source), unet, device=device, dtype=torch.float32,
                                              pass_through_other_layers=True)
        init_label = init_source.label
    if adapter.local_fac_prj.config.embedding_dim != face_dim:
        raise TrainingError(f"The adapter {init_label} takes {adapter.local_fac_prj.config.embedding_dim}-wide face "
                            f"features but the face encoder gives {face_dim}; they do not fit.")
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    model_hashes = (manager.hashes.of(base_path), face_file.sha256)
    return TrainingModels(unet, pipe.tokenizer, FrozenEncoders(load_encoders, release_encoders), adapter,
                          noise_scheduler, dict(pipe.scheduler.config), base_source.label, init_label,
                          float(vae_config.get("scaling_factor", 0.18215)), model_hashes)


class TrainingModule(nn.Module):
    """What accelerate wraps (DistributedDataParallel on several GPUs): the adapter, run through the frozen UNet.

    The UNet is held outside the module tree, so only the adapter's parameters are the model's.
    """

    def __init__(self, adapter: nn.Module, unet: nn.Module):
        super().__init__()
        self.adapter = adapter
        self.__dict__["unet"] = unet

    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, text_embeds: torch.Tensor,
                face_features: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        from facestudio.fact import face_conditioning

        # One photo per sample ([B, 1, 144, D]); dropped samples get the "no face" tokens.
        conditioning = face_conditioning(self.adapter, text_embeds, face_features[:, None], drop=drop)
        return self.unet(noisy_latents, timesteps, encoder_hidden_states=conditioning.prompt_embeds,
                         cross_attention_kwargs=conditioning.cross_attention_kwargs).sample


# -- the trainer ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepMetrics:
    step: int
    loss: float
    mse: float
    fair: float
    lr: float
    seconds_per_step: float

    def to_dict(self) -> dict:
        return {"step": self.step, "loss": self.loss, "mse": self.mse, "fair": self.fair, "lr": self.lr,
                "seconds_per_step": round(self.seconds_per_step, 4)}


ProgressCallback = Callable[[RunStatus], None]


class FACTTrainer:
    """One training run over a run folder: `setup()` loads everything (and the last checkpoint), `train()` runs.

    `request_stop()` (a signal handler, or a cancel file the loop polls) ends the run at the next step boundary
    with a checkpoint and the state "cancelled".
    """

    def __init__(self, run: RunFolder, config: TrainConfig, on_progress: ProgressCallback | None = None,
                 manager: ModelManager | None = None):
        self.run = run
        self.config = config
        self.on_progress = on_progress
        self._manager = manager
        self._stop_requested = False
        self.step = 0
        self.samples_seen = 0
        self.status = run.read_status() or RunStatus(total=config.steps)
        self._last_status_write = 0.0
        self._last_log = 0.0
        self._seconds_per_step: float | None = None

    # -- setup ----------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration
        from diffusers.optimization import get_scheduler

        from facestudio.training.data import TrainingData
        from facestudio.training.dataset import load_manifest
        from facestudio.training.fair import FairRecorder

        config = self.config
        on_cpu = claim_device(config)
        if on_cpu:
            keep_freed_memory()  # no page faults for the tensors every step frees and allocates again
        self.accelerator = Accelerator(
            mixed_precision=resolve_mixed_precision(config), gradient_accumulation_steps=config.gradient_accumulation,
            cpu=on_cpu, project_config=ProjectConfiguration(project_dir=str(self.run.root)),
        )
        accelerator = self.accelerator
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision,
                                                                              torch.float32)
        manifest = load_manifest(Path(config.dataset))
        self.split = self._holdout_split(manifest, accelerator.is_main_process)
        self.data = TrainingData(manifest, config.resolution, exclude=frozenset(self.split.images))
        self.models = load_models(config, accelerator.device, self.weight_dtype, self._manager)
        models = self.models
        if config.gradient_checkpointing:
            models.unet.enable_gradient_checkpointing()
        adapter = models.adapter
        adapter.train()
        adapter.requires_grad_(True)
        if config.trainable == "face-layers":
            adapter.local_fac_prj.requires_grad_(False)
        self.recorder = FairRecorder(adapter).attach()
        params = [p for p in adapter.parameters() if p.requires_grad]
        optimizer = make_optimizer(config, params, accelerator.device)
        self.lr_scheduler = get_scheduler(config.lr_scheduler, optimizer,
                                          num_warmup_steps=config.effective_warmup_steps,
                                          num_training_steps=config.steps)
        self.module, self.optimizer = accelerator.prepare(TrainingModule(adapter, models.unet), optimizer)
        self.trainable_parameters = params
        self.stepper = self._step_in_backward(optimizer, params) if config.fused_backward else None
        # Kept for the checkpoint layout (rng-<process>.safetensors); the samples draw from their own generators.
        self.generator = torch.Generator().manual_seed(config.seed * 1009 + accelerator.process_index)
        self.global_batch = config.batch_size * accelerator.num_processes
        self.local_batch = config.batch_size
        self.encodings = self._prepare_encodings()
        latest = self.run.latest_checkpoint()
        if latest is not None:
            self._restore(*latest)
        elif accelerator.is_main_process:  # a fresh start (or a kill before the first checkpoint): no old metrics
            self.run.truncate_metrics(0)

    def _step_in_backward(self, optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> StepInBackward:
        """`fused_backward`'s hooks, where this run can use them (the config check cannot see the processes or
        what `auto` precision became)."""
        accelerator = self.accelerator
        self.config.check_processes(accelerator.num_processes)
        if accelerator.mixed_precision == "fp16":
            raise TrainingError("`fused_backward` cannot use fp16 (this GPU has no bf16): its loss scaler must see "
                                "every gradient before a step; set `mixed_precision` to no.", field="fused_backward")
        return StepInBackward(optimizer, params, self.config.max_grad_norm)

    def _holdout_split(self, manifest: DatasetManifest, main: bool) -> HoldoutSplit:
        """The photos this run keeps out of training: the recorded split of a resumed run, else chosen from the
        settings (and recorded by the main process)."""
        known = {item.image for item in manifest.items}
        recorded = read_split(self.run.root)
        if recorded is not None and set(recorded.images) <= known:
            return recorded
        split = choose_holdout(manifest.items, self.config.holdout, self.config.seed)
        if recorded is not None:
            logger.warning("The recorded held-out photos are no longer all in %s; holding out %s instead.",
                           manifest.root, ", ".join(split.images) or "none")
        if main:
            write_split(self.run.root, split)
        if split.images:
            logger.info("Holding out %d photo(s) for evaluation: %s", len(split.images), ", ".join(split.images))
        return split

    def _restore(self, step: int, path: Path) -> None:
        state, adapter_state, optimizer_state, rng = load_checkpoint(path, self.accelerator.process_index)
        adapter = self.models.adapter
        expected = adapter.state_dict()
        if set(adapter_state) != set(expected) or any(adapter_state[k].shape != expected[k].shape for k in expected):
            raise TrainingError(f"The checkpoint {path} does not match this run's adapter; it belongs to another run.")
        with torch.no_grad():
            adapter.load_state_dict({k: v.to(expected[k].device, expected[k].dtype) for k, v in adapter_state.items()})
        self.optimizer.load_state_dict(optimizer_state)
        self.lr_scheduler.load_state_dict(state.scheduler)
        if state.scaler and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state.scaler)
        restore_rng(self.generator, rng, state.python_rng, state.numpy_rng)
        self.step, self.samples_seen = state.step, state.samples_seen
        self._keep_global_batch(state.extra, path)
        if self.accelerator.is_main_process:
            self.run.truncate_metrics(self.step)
        rows = self.run.read_metrics()
        self.status.loss = rows[-1].get("loss") if rows else None
        logger.info("Resumed %s from step %d", self.run.root, self.step)

    def _keep_global_batch(self, extra: dict, path: Path) -> None:
        """A run resumed on another number of processes keeps its global batch (so its data and every sample's
        random draws stay those of the uninterrupted run); only the float reduction order changes."""
        processes = self.accelerator.num_processes
        saved_processes = int(extra.get("processes", processes))
        global_batch = int(extra.get("global_batch", self.config.batch_size * saved_processes))
        if saved_processes == processes:
            return
        if global_batch % processes:
            raise TrainingError(f"The checkpoint {path.name} was trained with a global batch of {global_batch} "
                                f"images on {saved_processes} process(es); {processes} processes cannot split it "
                                "evenly. Resume on a number of processes that divides it.")
        self.global_batch, self.local_batch = global_batch, global_batch // processes
        logger.warning("Resuming on %d process(es) where the checkpoint was written on %d: each takes %d of the "
                       "global batch of %d, so the result differs from an uninterrupted run only by the order of "
                       "float reductions.", processes, saved_processes, self.local_batch, global_batch)

    # -- control ----------------------------------------------------------------------------------------------------

    def manager_settings(self) -> EngineSettings:
        """The limits this process was started with (the manager's `EngineSettings`; defaults without a manager)."""
        from facestudio.engine import EngineSettings

        return self._manager.settings if self._manager is not None else EngineSettings(home=StudioSettings().home)

    def request_stop(self) -> None:
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        """A stop asked of this process (a signal) or of the run (`cancel.request`), before any collective step."""
        return self._stop_requested or self.run.cancel_requested()

    def _should_stop(self) -> bool:
        """Whether to stop now; on several processes all of them must agree, or the others would wait for ever."""
        local = self.stop_requested
        if self.accelerator.num_processes == 1:
            return local
        flag = torch.tensor([1.0 if local else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def _prepare_encodings(self) -> Encodings:
        """The dataset's frozen-encoder outputs: read from the dataset's cache, or computed once (by the main
        process, which stores them; the others read its file) before the first step."""
        from facestudio.training.dataset import MANIFEST_NAME

        config, accelerator, models = self.config, self.accelerator, self.models
        key = cache_key(models.model_hashes, config.resolution, self.weight_dtype,
                        Path(config.dataset) / MANIFEST_NAME, excluded=self.split.images)
        path = Path(config.dataset) / ENCODINGS_FOLDER / f"{key}.safetensors"
        encodings = None
        if accelerator.is_main_process:
            encodings = load_encodings(path, len(self.data))
            if encodings is None:
                started = time.perf_counter()
                encodings = self._encode_dataset()
                save_encodings(path, encodings)
                logger.info("Encoded %d photo(s) once for the whole run in %.1f s", len(self.data),
                            time.perf_counter() - started)
        accelerator.wait_for_everyone()
        if encodings is None:
            encodings = load_encodings(path, len(self.data)) or self._encode_dataset()
        return encodings

    def _encode_dataset(self) -> Encodings:
        """Load the frozen encoders, encode every item, release them again."""
        models, device = self.models, self.accelerator.device
        with models.encoders.loaded() as encoders:
            vae, text_encoder, face_encoder = encoders.vae, encoders.text_encoder, encoders.face_encoder

            def vae_encode(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                distribution = vae.encode(pixels.to(device, self.weight_dtype)).latent_dist
                return distribution.mean, distribution.std

            def face_encode(references: torch.Tensor) -> torch.Tensor:
                return face_encoder(references.to(device, torch.float32))

            def text_encode(captions: list[str]) -> torch.Tensor:
                tokens = models.tokenizer(captions, padding="max_length", truncation=True,
                                          max_length=models.tokenizer.model_max_length, return_tensors="pt")
                return text_encoder(tokens.input_ids.to(device))[0]

            return encode_dataset(self.data, vae_encode, face_encode, text_encode)

    # -- one step ---------------------------------------------------------------------------------------------------

    def _losses(self, batch, generators: Sequence[torch.Generator], drop_prob: float):
        """(loss, mse, fair) of one batch, with the autograd graph: each sample's noise, timestep and drop from its
        own generator (`generators[k]` for sample k)."""
        config, models, device = self.config, self.models, self.accelerator.device
        encodings, dtype = self.encodings, self.weight_dtype
        mean = encodings.latent_mean[list(batch.indices)].to(device, dtype)
        std = encodings.latent_std[list(batch.indices)].to(device, dtype)
        face_features = encodings.face_features[list(batch.reference_indices)].to(device, torch.float32)
        text_embeds = torch.stack([encodings.text[c] for c in batch.captions]).to(device, dtype)
        shape = tuple(mean.shape[1:])
        timestep_count = models.noise_scheduler.config.num_train_timesteps
        draws = [(torch.randn(shape, generator=g), torch.randn(shape, generator=g),
                  torch.randint(0, timestep_count, (1,), generator=g), torch.rand(1, generator=g)) for g in generators]
        latent_noise = torch.stack([d[0] for d in draws]).to(device, dtype)
        latents = (mean + std * latent_noise) * models.vae_scaling_factor
        noise = torch.stack([d[1] for d in draws]).to(device, latents.dtype)
        timesteps = torch.cat([d[2] for d in draws]).to(device)
        drop = (torch.cat([d[3] for d in draws]) < drop_prob).to(device)
        noisy = models.noise_scheduler.add_noise(latents, noise, timesteps)
        if models.noise_scheduler.config.prediction_type == "v_prediction":
            target = models.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        self.recorder.begin(batch.face_masks.to(device), tuple(latents.shape[-2:]))
        prediction = self.module(noisy, timesteps, text_embeds, face_features, drop)
        mse = F.mse_loss(prediction.float(), target.float())
        fair = self.recorder.loss()
        return mse + config.fair_weight * fair, mse, fair

    def _micro_batch(self, shuffle_prob: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward and backward of one micro-batch at the current data position; returns (loss, mse, fair)."""
        config, accelerator = self.config, self.accelerator
        # This process's contiguous slice of the global batch, and each sample's generator from its global position.
        first = self.samples_seen + accelerator.process_index * self.local_batch
        positions = range(first, first + self.local_batch)
        indices = self.data.global_indices(config.seed, first, self.local_batch)
        self.samples_seen += self.global_batch
        generators = [sample_generator(config.seed, position) for position in positions]
        batch = self.data.batch(indices, shuffle_prob, generators)
        with accelerator.accumulate(self.module):
            loss, mse, fair = self._losses(batch, generators, config.drop_prob)
            # With fused_backward the parameters step during the backward pass: a non-finite loss must not reach it.
            if self.stepper is None or torch.isfinite(loss):
                accelerator.backward(loss)
            self.recorder.end()
            if accelerator.sync_gradients:
                if self.stepper is None:
                    if config.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(self.trainable_parameters, config.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                self.lr_scheduler.step()
        return loss.detach(), mse.detach(), fair.detach()

    def evaluate(self, seed: int = 0) -> tuple[float, float]:
        """(MSE, FAIR) averaged over the whole dataset at fixed noise and timesteps, each photo conditioned on itself
        and never dropped: comparable between steps and between runs. Leaves the run's random streams alone."""
        totals, count = [0.0, 0.0], 0
        with torch.no_grad():
            for start in range(0, len(self.data), self.config.batch_size):
                indices = list(range(start, min(start + self.config.batch_size, len(self.data))))
                generators = [sample_generator(seed, index) for index in indices]
                _, mse, fair = self._losses(self.data.batch(indices, 0.0, generators), generators, 0.0)
                self.recorder.end()
                totals[0] += float(mse) * len(indices)
                totals[1] += float(fair) * len(indices)
                count += len(indices)
        return totals[0] / count, totals[1] / count

    def train_step(self) -> StepMetrics:
        """One optimizer step (`gradient_accumulation` micro-batches)."""
        started = time.perf_counter()
        shuffle_prob = self.config.shuffle_probability(self.step)
        lr = self.lr_scheduler.get_last_lr()[0]
        totals = torch.zeros(3, device=self.accelerator.device)
        for _ in range(self.config.gradient_accumulation):
            totals += torch.stack(self._micro_batch(shuffle_prob)).float()
        totals = self.accelerator.reduce(totals / self.config.gradient_accumulation, reduction="mean")
        self.step += 1
        loss, mse, fair = (float(v) for v in totals.cpu())
        return StepMetrics(self.step, loss, mse, fair, lr, time.perf_counter() - started)

    # -- the loop ---------------------------------------------------------------------------------------------------

    def train(self) -> RunStatus:
        """Run to the end or to a stop request; returns the final status (done or cancelled)."""
        config, run, accelerator = self.config, self.run, self.accelerator
        main = accelerator.is_main_process
        latest = run.latest_checkpoint()
        self._set_status(RunState.RUNNING, force=True, stage=RunStage.TRAINING, started_at=time.time(),
                         finished_at=None, error=None, pid=os.getpid(), checkpoint_step=latest[0] if latest else None)
        nonfinite = 0
        while self.step < config.steps:
            if self._should_stop():
                return self._cancel()
            loop_started = time.perf_counter()
            metrics = self.train_step()
            nonfinite = 0 if math.isfinite(metrics.loss) else nonfinite + 1
            if nonfinite >= MAX_NONFINITE_STEPS:
                raise TrainingError(f"The loss was not finite for {nonfinite} steps in a row (step {self.step}); "
                                    "lower --lr, or use --mixed-precision bf16 or no.")
            if main:
                run.append_metrics(metrics.to_dict())
            if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                self._checkpoint()
            if config.sample_every and (self.step % config.sample_every == 0 or self.step == config.steps):
                self._samples()
            self._note_speed(time.perf_counter() - loop_started)
            self._set_status(RunState.CANCELLING if self._should_stop() else RunState.RUNNING, loss=metrics.loss)
            self._log(metrics)
        return self._finish()

    def _note_speed(self, seconds: float) -> None:
        previous = self._seconds_per_step
        self._seconds_per_step = seconds if previous is None else 0.9 * previous + 0.1 * seconds

    def _set_status(self, state: RunState, force: bool = False, **changes) -> None:
        status = self.status
        status.state, status.step, status.total = state, self.step, self.config.steps
        if self._seconds_per_step is not None:
            status.seconds_per_step = round(self._seconds_per_step, 4)
            status.eta_seconds = round(self._seconds_per_step * (self.config.steps - self.step), 1)
        for key, value in changes.items():
            setattr(status, key, value)
        now = time.monotonic()
        if self.accelerator.is_main_process and (force or now - self._last_status_write >= STATUS_EVERY_SECONDS
                                                 or state != RunState.RUNNING):
            self.run.write_status(status)
            self._last_status_write = now
        if self.on_progress is not None:
            self.on_progress(status)

    def _log(self, metrics: StepMetrics) -> None:
        now = time.monotonic()
        if now - self._last_log < LOG_EVERY_SECONDS and self.step != self.config.steps:
            return
        self._last_log = now
        eta = self.status.eta_seconds
        logger.info("step %d/%d  loss %.4f (mse %.4f, fair %.4f)  lr %.2e  %.2f s/step  ETA %s", metrics.step,
                    self.config.steps, metrics.loss, metrics.mse, metrics.fair, metrics.lr,
                    self._seconds_per_step or 0.0, format_duration(eta) if eta is not None else "?")

    def _checkpoint(self) -> None:
        from accelerate.utils import gather_object

        accelerator = self.accelerator
        tensors, python_rng, numpy_rng = capture_rng(self.generator)
        rng_by_process = gather_object([tensors]) if accelerator.num_processes > 1 else [tensors]
        if accelerator.is_main_process:
            scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
            state = TrainingState(step=self.step, samples_seen=self.samples_seen,
                                  scheduler=_json_safe(self.lr_scheduler.state_dict()), scaler=scaler,
                                  python_rng=python_rng, numpy_rng=numpy_rng,
                                  extra={"base_model": self.models.base_label, "init": self.models.init_label,
                                         "processes": accelerator.num_processes, "global_batch": self.global_batch})
            adapter = self.models.adapter
            save_checkpoint(self.run, state, adapter.state_dict(), self.optimizer.state_dict(),
                            dict(enumerate(rng_by_process)), self.config.keep_checkpoints,
                            adapter_metadata=adapter.file_metadata(self.models.base_label))
            self.status.checkpoint_step = self.step
            logger.info("Checkpoint at step %d", self.step)
        accelerator.wait_for_everyone()

    def _samples(self) -> None:
        if not self.accelerator.is_main_process:
            return
        from facestudio.training.samples import render_samples

        first = self.data.items[0]
        reference = self.data.batch([0], 0.0, [torch.Generator()]).references
        with self.models.encoders.loaded() as encoders, self.accelerator.autocast():
            images = render_samples(self.models, encoders, reference, first.caption, self.config,
                                    self.accelerator.device)
        self.run.samples_dir.mkdir(parents=True, exist_ok=True)
        for seed, image in zip(self.config.sample_seeds, images, strict=True):
            write_atomic(self.run.samples_dir / f"step-{self.step:06d}_seed-{seed}.png", _png_bytes(image))

    def _cancel(self) -> RunStatus:
        latest = self.run.latest_checkpoint()
        self._set_status(RunState.CANCELLING, force=True)
        if self.step > 0 and (latest is None or latest[0] != self.step):
            self._checkpoint()
        self._set_status(RunState.CANCELLED, force=True, finished_at=time.time())
        logger.info("Cancelled at step %d; continue with `python -m facestudio train --resume %s`", self.step,
                    self.run.root)
        return self.status

    def _finish(self) -> RunStatus:
        latest = self.run.latest_checkpoint()
        if latest is None or latest[0] != self.step:
            self._checkpoint()
        if self.accelerator.is_main_process:
            export_adapter(self.models.adapter, self.run.adapter_path, self.models.base_label)
        self.accelerator.wait_for_everyone()
        self._set_status(RunState.DONE, force=True, finished_at=time.time(), eta_seconds=0.0)
        logger.info("Done: %s", self.run.adapter_path)
        return self.status

    def close(self) -> None:
        recorder = getattr(self, "recorder", None)
        if recorder is not None:
            recorder.detach()
        stepper = getattr(self, "stepper", None)
        if stepper is not None:
            stepper.remove()
        if getattr(self, "accelerator", None) is not None and self.accelerator.num_processes > 1:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():  # no "terminate called without an active exception"
                dist.destroy_process_group()


def export_adapter(adapter, path: Path, base_label: str) -> Path:
    """Write the trained adapter in the released key layout and read it back: a run is done only with a file that
    loads."""
    from facestudio.fact import check_state_dict, load_state_dict

    adapter.save(path, base_model=base_label)
    expected = {name: tensor.shape for name, tensor in adapter.state_dict().items()}
    try:
        check_state_dict(load_state_dict(path), expected, what="trained FACT adapter")
    except FaceStudioError as err:
        path.unlink(missing_ok=True)
        raise TrainingError(f"The trained adapter could not be read back from {path} ({err}).") from err
    return path


# -- helpers ---------------------------------------------------------------------------------------------------------------


def make_optimizer(config: TrainConfig, params: list[nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    """AdamW over the adapter's parameters: fused kernels on CUDA and the CPU, the multi-tensor (foreach) path
    elsewhere, or bitsandbytes' 8-bit AdamW (`optimizer` adamw8bit, CUDA and the CPU): its two moments take one byte
    per parameter each instead of four, 1.5 GB less over FACT's 255.5M parameters."""
    if config.optimizer == "adamw8bit":
        if device.type not in ("cuda", "cpu"):
            raise TrainingError(f"`optimizer` adamw8bit runs on CUDA GPUs and the CPU, not on {device.type}; use "
                                "adamw on this device.", field="optimizer")
        bnb = _import_bitsandbytes()
        return bnb.optim.AdamW8bit(params, lr=config.lr, weight_decay=config.weight_decay)
    # Fused kernels (CUDA, and the CPU since torch 2.4) update in place; the foreach path allocates temporaries the
    # size of all the moments (about 1 GB more peak memory over FACT's 255.5M parameters).
    fast = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, **fast)


def _import_bitsandbytes():
    try:
        import bitsandbytes as bnb
    except ImportError as err:
        raise TrainingError(f"`optimizer` adamw8bit needs the bitsandbytes package ({INSTALL_8BIT}).",
                            field="optimizer") from err
    return bnb


def claim_device(config: TrainConfig) -> bool:
    """Make `config.device` the device accelerate picks; True when that is the CPU. For `cuda:N` the GPU becomes
    the current CUDA device (`torch.cuda.set_device`), so accelerate's "cuda" is that GPU; `CUDA_VISIBLE_DEVICES`
    is left as it is. `TrainingError` for a device this machine does not have."""
    device = config.device
    if device in ("auto", "cpu"):
        return device == "cpu"
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise TrainingError("`device` mps needs Apple's Metal (MPS), which this machine lacks; use cpu.",
                                field="device")
        return False
    if not torch.cuda.is_available():
        raise TrainingError(f"`device` {device} needs a CUDA GPU and this machine has none; use cpu.", field="device")
    if ":" in device:
        index, count = int(device.split(":", 1)[1]), torch.cuda.device_count()
        if index >= count:
            raise TrainingError(f"`device` {device}: this machine has {count} CUDA GPU(s), cuda:0 to "
                                f"cuda:{count - 1}.", field="device")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise TrainingError(f"`device` {device} picks one GPU; under accelerate launch choose the GPUs with "
                                "its --gpu_ids instead.", field="device")
        torch.cuda.set_device(index)
    return False


def resolve_mixed_precision(config: TrainConfig) -> str:
    """The accelerate mixed-precision mode a run uses (`auto` resolved for this machine)."""
    on_cpu = config.device == "cpu" or not torch.cuda.is_available()
    if config.mixed_precision == "fp16" and on_cpu:
        raise TrainingError("`mixed_precision` fp16 needs a CUDA GPU; use bf16 or no on the CPU.",
                            field="mixed_precision")
    if config.mixed_precision != "auto":
        return config.mixed_precision
    if on_cpu:
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    return None  # functions (LambdaLR's lambdas) are rebuilt from the config, not stored


def _png_bytes(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# -- the first stage of a run that starts from photos ------------------------------------------------------------------


class _StopPreparing(Exception):
    """Internal: a stop request reached between two photos."""


def dataset_ready(folder: str | Path) -> bool:
    """Whether `folder` holds a complete dataset (its manifest is written last, and every file it lists exists)."""
    from facestudio.training.dataset import load_manifest

    try:
        load_manifest(Path(folder))
    except DatasetError:
        return False
    return True


def prepare_photos(run: RunFolder, config: TrainConfig, should_stop: Callable[[], bool],
                   on_progress: ProgressCallback | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                   insightface_root: Path = DEFAULT_INSIGHTFACE_ROOT) -> RunStatus | None:
    """Prepare `config.photos` into `config.dataset`: state running, stage preparing, step/total counting photos,
    and the photo report (every photo kept or rejected, with the reason) in RUN/prepare.json as it grows. Skipped
    when the dataset is already complete (a resumed run); an interrupted preparation starts again from scratch
    (`prepare_dataset` commits a dataset only whole). Returns the cancelled status when `should_stop` said so
    between two photos, else None (then the run trains). `DatasetError` when no photo can be used."""
    from facestudio.training.dataset import REPORT_NAME, PrepareSettings, preparation_analyzer, prepare_dataset

    dataset = Path(config.dataset)
    if dataset_ready(dataset):
        report = run.read_prepare_report()
        if report is None or not report.get("complete"):  # killed between the dataset and its report
            saved = json.loads((dataset / REPORT_NAME).read_text(encoding="utf-8"))
            run.write_prepare_report({**saved, "complete": True})
        return None
    status = run.read_status() or RunStatus()
    status.state, status.stage, status.step, status.total = RunState.RUNNING, RunStage.PREPARING, 0, 0
    status.pid, status.started_at, status.finished_at, status.error = os.getpid(), time.time(), None, None
    status.loss = status.seconds_per_step = status.eta_seconds = status.checkpoint_step = None

    def publish() -> None:
        run.write_status(status)
        if on_progress is not None:
            on_progress(status)

    items: list[dict] = []

    def on_item(item, done: int, total: int) -> None:
        items.append(item.to_dict())
        kept = sum(1 for row in items if row["status"] == "kept")
        run.write_prepare_report({"complete": False, "photos": total, "kept": kept, "rejected": len(items) - kept,
                                  "warnings": [], "items": items})
        status.step, status.total = done, total
        publish()
        if should_stop():
            raise _StopPreparing

    run.prepare_report_path.unlink(missing_ok=True)  # a report of an earlier, interrupted attempt
    publish()
    settings = PrepareSettings()
    analyzer = preparation_analyzer(config.face_backend, settings, insightface_root)
    try:
        if should_stop():
            raise _StopPreparing
        report = prepare_dataset(Path(str(config.photos)), dataset, analyzer, settings, on_item=on_item,
                                 max_pixels=max_pixels)
    except _StopPreparing:
        status.state, status.finished_at = RunState.CANCELLED, time.time()
        publish()
        logger.info("Cancelled while preparing photo %d of %d; resuming prepares them again", status.step,
                    status.total)
        return status
    finally:
        analyzer.close()
    run.write_prepare_report({**report.to_dict(), "complete": True})
    if not report.kept:
        reasons = "; ".join(f"{item.source}: {item.detail}" for item in report.items[:3])
        raise DatasetError(f"None of the {len(report.items)} photo(s) can be used for training ({reasons}); "
                           f"{run.prepare_report_path} lists each.")
    for warning in report.warnings:
        logger.warning("%s", warning)
    logger.info("Prepared %d of %d photo(s) into %s", len(report.kept), len(report.items), dataset)
    status.stage, status.step, status.total = RunStage.TRAINING, 0, config.steps
    publish()
    return None


def _prepare_first(run: RunFolder, config: TrainConfig, trainer: FACTTrainer,
                   on_progress: ProgressCallback | None) -> RunStatus | None:
    """The preparing stage on the main process (the others wait for its dataset); the cancelled status, or None."""
    if not _is_main_rank():
        _wait_until(lambda: dataset_ready(config.dataset), 3600.0, f"the main process to prepare {config.dataset}")
        return None
    limits = trainer.manager_settings()
    stopped = prepare_photos(run, config, lambda: trainer.stop_requested, on_progress,
                             max_pixels=limits.max_pixels, insightface_root=limits.insightface_root)
    trainer.status = run.read_status() or trainer.status
    return stopped


# -- entry points ----------------------------------------------------------------------------------------------------------


def run_training(args: TrainArgs, on_progress: ProgressCallback | None = None,
                 manager: ModelManager | None = None) -> RunStatus:
    """Start or resume a run in this process; returns its final status. On an error the run is marked failed (with
    the error) and the error is raised again."""
    run = args.run
    main = _is_main_rank()
    if args.config is not None:
        if main:
            run = create_run(run.root, args.config, state=RunState.RUNNING)
        else:
            _wait_for_run(run)
    config = read_config(run)
    status = run.read_status()
    if status is not None and status.state == RunState.DONE and run.adapter_path.is_file():
        logger.info("%s is already done: %s", run.root, run.adapter_path)
        return status
    trainer = FACTTrainer(run, config, on_progress=on_progress, manager=manager)
    restore = _install_stop_handlers(trainer)
    try:
        if config.photos is not None:
            stopped = _prepare_first(run, config, trainer, on_progress)
            if stopped is not None:
                return stopped
        trainer.setup()
        status = trainer.train()
        device = str(trainer.accelerator.device)
        if device == "cuda":  # the GPU the run trained on (`claim_device` made it current), for the evaluation
            device = f"cuda:{torch.cuda.current_device()}"
    except BaseException as err:
        message = str(err) if isinstance(err, FaceStudioError) else f"{type(err).__name__}: {err}"
        if isinstance(err, KeyboardInterrupt):
            message = "interrupted"
        if main:
            failed = run.read_status() or RunStatus(total=config.steps)
            failed.state, failed.error, failed.finished_at, failed.pid = RunState.FAILED, message, time.time(), os.getpid()
            run.write_status(failed)
        raise
    finally:
        restore()
        trainer.close()
    if main and status.state == RunState.DONE:
        engine_settings = trainer.manager_settings()
        del trainer  # the training models go before the evaluation loads the engine's
        _evaluate_quietly(run, config, engine_settings, device)
    return status


def _evaluate_quietly(run: RunFolder, config: TrainConfig, engine_settings: EngineSettings, device: str) -> None:
    """Compare the trained adapter with the starting one on the held-out photos (RUN/evaluation.json). The adapter
    is the run's deliverable: an evaluation that fails leaves the run done, with a warning in its log."""
    import gc

    from facestudio.training.evaluation import evaluate_run, evaluation_engine_settings

    gc.collect()
    try:
        evaluate_run(run, config, evaluation_engine_settings(engine_settings, device))
    except Exception as err:  # any failure here must not undo a finished training (see the docstring)
        logger.warning("The evaluation of %s failed (%s: %s); the trained adapter is fine and can be evaluated "
                       "with `python -m facestudio evaluate`.", run.root, type(err).__name__, err)


def _is_main_rank() -> bool:
    """Process 0 of an `accelerate launch` (or the only process): the one that creates the run and writes status."""
    return int(os.environ.get("RANK", "0")) == 0


def _wait_for_run(run: RunFolder, timeout_seconds: float = 120.0) -> None:
    _wait_until(run.exists, timeout_seconds, f"the main process to create the run {run.root}")


def _wait_until(ready: Callable[[], bool], timeout_seconds: float, what: str) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not ready():
        if time.monotonic() > deadline:
            raise TrainingError(f"Timed out after {timeout_seconds:.0f} s waiting for {what}.")
        time.sleep(0.2)


def _install_stop_handlers(trainer: FACTTrainer) -> Callable[[], None]:
    """SIGTERM and the first Ctrl+C end the run at the next step with a checkpoint ("cancelled"); a second Ctrl+C
    interrupts at once."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def stop(signum, _frame):
        logger.warning("Stopping at the next step (signal %d); a checkpoint will be written.", signum)
        trainer.request_stop()
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    for sig in previous:
        signal.signal(sig, stop)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def main(argv: Sequence[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    if not debug:  # the libraries' known noise (facestudio/noise.py) stays out of train.log
        from facestudio.noise import filter_native_stderr, quiet_library_warnings

        filter_native_stderr()
        quiet_library_warnings()
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        status = run_training(args, manager=model_manager(StudioSettings.from_env()))  # this process's entry point
    except FaceStudioError as err:
        if debug:
            raise
        flag = None if err.field is None else "--" + err.field.replace("_", "-")
        print(f"error: {err.worded(flag)}", file=sys.stderr)
        return 1
    return 0 if status.state in (RunState.DONE, RunState.CANCELLED) else 1


if __name__ == "__main__":
    sys.exit(main())
