"""The samplers a user can pick, by name, built from the base model's own scheduler config (diffusers' schedulers)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from facestudio.errors import InvalidRequestError

if TYPE_CHECKING:
    from diffusers.schedulers.scheduling_utils import SchedulerMixin


@dataclass(frozen=True)
class SchedulerChoice:
    key: str
    title: str
    class_name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


SCHEDULERS: dict[str, SchedulerChoice] = {
    choice.key: choice
    for choice in (
        SchedulerChoice("dpmpp-2m-karras", "DPM++ 2M Karras", "DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
        SchedulerChoice("dpmpp-2m", "DPM++ 2M", "DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
        SchedulerChoice("euler-a", "Euler a", "EulerAncestralDiscreteScheduler"),
        SchedulerChoice("euler", "Euler", "EulerDiscreteScheduler"),
        SchedulerChoice("ddim", "DDIM", "DDIMScheduler"),
        SchedulerChoice("pndm", "PNDM", "PNDMScheduler", {"skip_prk_steps": True}),
        SchedulerChoice("unipc", "UniPC", "UniPCMultistepScheduler"),
        SchedulerChoice("lms", "LMS", "LMSDiscreteScheduler"),
    )
}
DEFAULT_SCHEDULER = "dpmpp-2m-karras"
# What the FACT release samples with (FACT.md §6): PNDM, 50 steps, CFG 7.
RELEASE_SCHEDULER = "pndm"


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9+]", "", name.lower()).replace("+", "p")


_ALIASES = {_normalise(c.key): c.key for c in SCHEDULERS.values()} | {
    _normalise(c.title): c.key for c in SCHEDULERS.values()
}


def scheduler_key(name: str) -> str:
    """Accept `DPM++ 2M Karras`, `dpmpp-2m-karras`, `euler_a`, ... and return the canonical key."""
    key = _ALIASES.get(_normalise(name))
    if key is None:
        raise InvalidRequestError(
            f"Unknown scheduler {name!r}; choose one of: {', '.join(c.title for c in SCHEDULERS.values())}.",
            field="scheduler",
        )
    return key


def make_scheduler(name: str, base_config: Mapping[str, Any]) -> SchedulerMixin:
    """A fresh scheduler (no state from earlier runs) with the base model's noise schedule."""
    import diffusers

    choice = SCHEDULERS[scheduler_key(name)]
    scheduler_class = getattr(diffusers, choice.class_name)
    return scheduler_class.from_config(dict(base_config), **choice.overrides)
