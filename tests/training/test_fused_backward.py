"""`fused_backward`: each parameter steps inside the backward pass and its gradient is freed at once; the updates,
the optimizer state and the checkpoints are those of an ordinary run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from facestudio.errors import TrainingError
from facestudio.training import TrainConfig
from facestudio.training.fused_backward import StepInBackward
from facestudio.training.train_fact import FACTTrainer, parse_args
from tests.training.test_encodings import make_trainer, resumed_adapter


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 3))


def train_small(fused: bool, max_grad_norm: float, optimizer_type: str = "adamw", steps: int = 4):
    """(parameters, optimizer state, most gradients alive at once) after `steps` steps with a decaying schedule."""
    model = small_model()
    params = list(model.parameters())
    if optimizer_type == "adamw":
        optimizer = torch.optim.AdamW(params, lr=0.05, weight_decay=0.01, fused=True)
    else:
        import bitsandbytes as bnb

        optimizer = bnb.optim.AdamW8bit(params, lr=0.05, weight_decay=0.01, min_8bit_size=0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1 / (k + 1))
    most_alive = [0]

    def count_alive(_param):
        most_alive[0] = max(most_alive[0], sum(p.grad is not None for p in params))

    watchers = [p.register_post_accumulate_grad_hook(count_alive) for p in params]
    stepper = StepInBackward(optimizer, params, max_grad_norm) if fused else None
    for step in range(steps):
        inputs = torch.randn(5, 6, generator=torch.Generator().manual_seed(step)) * 10
        model(inputs).pow(2).mean().backward()
        if stepper is None:
            for param in params:  # clipping each tensor on its own: what fused_backward does
                if max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_([param], max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        schedule.step()
    for watcher in watchers:
        watcher.remove()
    return torch.cat([p.detach().flatten() for p in params]), optimizer.state_dict(), most_alive[0], stepper


@pytest.mark.parametrize("optimizer_type", ["adamw", "adamw8bit"])
@pytest.mark.parametrize("max_grad_norm", [0.0, 0.05])
def test_stepping_in_the_backward_pass_gives_the_ordinary_updates_and_state(optimizer_type, max_grad_norm):
    if optimizer_type == "adamw8bit":
        pytest.importorskip("bitsandbytes")
    ordinary, ordinary_state, ordinary_alive, _ = train_small(False, max_grad_norm, optimizer_type)
    fused, fused_state, fused_alive, stepper = train_small(True, max_grad_norm, optimizer_type)
    assert torch.equal(fused, ordinary)
    assert ordinary_alive == 6 and fused_alive == 1  # every gradient at once, against one at a time
    assert stepper.stepped == 4 * 6  # every parameter, every step
    assert fused_state["param_groups"] == ordinary_state["param_groups"]  # lr schedule and layout unchanged
    assert same(fused_state["state"], ordinary_state["state"])


def same(a, b) -> bool:
    """Equal to the bit, through the nested dicts and lists an optimizer's state holds."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_clipping_in_the_backward_pass_caps_each_parameters_gradient():
    ordinary, *_ = train_small(False, 0.0)
    clipped, *_ = train_small(True, 0.05)
    assert not torch.equal(clipped, ordinary)  # the norm 0.05 did clip (the inputs are scaled to make sure)


def test_a_parameter_outside_the_optimizer_is_refused():
    params = list(small_model().parameters())
    optimizer = torch.optim.AdamW(params[:2])
    with pytest.raises(ValueError, match="must belong to the optimizer"):
        StepInBackward(optimizer, params, 0.0)


def test_the_trainer_with_fused_backward_trains_the_same_adapter_and_resumes_exactly(tmp_path, train_config,
                                                                                     manager):
    """Three steps with fused_backward == three ordinary steps (clipping off: the only difference is where the
    step runs), no gradient is left between steps; and 2 steps, a checkpoint, a new trainer, 1 step == 3 steps."""
    adapters = {}
    for name, fused in (("ordinary", False), ("fused", True)):
        config = train_config(steps=3, max_grad_norm=0.0, fused_backward=fused, checkpoint_every=100, sample_every=0)
        trainer = make_trainer(tmp_path / name, config, manager)
        try:
            assert (trainer.stepper is not None) == fused
            while trainer.step < 3:
                trainer.train_step()
                assert all(p.grad is None for p in trainer.trainable_parameters)
            adapters[name] = {k: v.clone() for k, v in trainer.models.adapter.state_dict().items()}
        finally:
            trainer.close()
    resumed = resumed_adapter(tmp_path / "resumed", config, manager, checkpoint_at=2)
    expected = adapters["ordinary"]
    assert all(torch.equal(adapters["fused"][k], expected[k]) for k in expected)
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)


def test_fused_backward_settings_that_cannot_work_are_refused_by_name():
    with pytest.raises(TrainingError, match="cannot accumulate gradients") as caught:
        TrainConfig(dataset="d", fused_backward=True, gradient_accumulation=2).check()
    assert caught.value.field == "fused_backward"
    with pytest.raises(TrainingError, match="cannot use fp16") as caught:
        TrainConfig(dataset="d", fused_backward=True, mixed_precision="fp16").check()
    assert caught.value.field == "fused_backward"
    with pytest.raises(TrainingError, match="`fused_backward` must be on or off"):
        TrainConfig(dataset="d", fused_backward="yes").check()  # type: ignore[arg-type]


@pytest.mark.parametrize(("processes", "precision", "message"), [
    (2, "no", "runs on one process, not 2"),
    (1, "fp16", "cannot use fp16 \\(this GPU has no bf16\\)"),
])
def test_fused_backward_refuses_several_processes_and_fp16_chosen_by_auto(processes, precision, message):
    trainer = FACTTrainer.__new__(FACTTrainer)
    trainer.config = TrainConfig(dataset="d", fused_backward=True)
    trainer.accelerator = SimpleNamespace(num_processes=processes, mixed_precision=precision)
    with pytest.raises(TrainingError, match=message) as caught:
        trainer._step_in_backward(torch.optim.AdamW([nn.Parameter(torch.zeros(1))]), [])
    assert caught.value.field == "fused_backward"


def test_the_flag_reaches_the_config(tmp_path):
    args = parse_args([str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--fused-backward", "on"])
    assert args.config is not None and args.config.fused_backward is True
    default = parse_args([str(tmp_path / "data"), "--out", str(tmp_path / "run2")])
    assert default.config is not None and default.config.fused_backward is False
