"""The learning-rate warm-up is capped to a fraction of the run: a short run (the Train tab's quick test) still
spends most of its steps at the learning rate it was given."""

from __future__ import annotations

import torch
from diffusers.optimization import get_scheduler

from facestudio.training.config import MAX_WARMUP_FRACTION, TrainConfig


def learning_rates(config: TrainConfig) -> list[float]:
    """The rate of each optimizer step under the schedule the trainer builds from `config`."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    schedule = get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=config.effective_warmup_steps,
                             num_training_steps=config.steps)
    rates = []
    for _ in range(config.steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def test_a_short_run_reaches_its_learning_rate_early():
    config = TrainConfig(dataset="-", steps=40, lr=1e-4)  # the default warm-up (50) is longer than the run
    assert config.warmup_steps == 50 and config.effective_warmup_steps == int(40 * MAX_WARMUP_FRACTION) == 4
    rates = learning_rates(config)
    assert rates[0] < config.lr
    assert all(abs(rate - config.lr) < 1e-12 for rate in rates[4:])  # 36 of 40 steps at the full rate


def test_a_long_run_keeps_the_warm_up_it_asked_for():
    assert TrainConfig(dataset="-", steps=1000).effective_warmup_steps == 50
    assert TrainConfig(dataset="-", steps=1000, warmup_steps=0).effective_warmup_steps == 0
    rates = learning_rates(TrainConfig(dataset="-", steps=200, warmup_steps=10))
    assert rates[9] < 1e-4 and rates[10] == 1e-4
