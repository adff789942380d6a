"""The optimizer step inside the backward pass (`fused_backward`): each trainable parameter is clipped and stepped as
soon as its gradient is complete, then its gradient is freed, so the gradients of all parameters never exist at
once. Over FACT's 255.5M fp32 parameters that is up to 0.95 GiB less at the end of the backward pass, where a
small training step peaks (0.5 GiB measured at 256x256 on the CPU; a 512x512 step peaks in its forward pass).

The run keeps one optimizer with its usual parameter groups: each hook hands the optimizer a view of the
parameter's own group (same settings, current learning rate, that one parameter) for one `step()`, so the
optimizer's state, its checkpoints and the learning-rate schedule are exactly those of an ordinary run, and
elementwise optimizers (AdamW, bitsandbytes' 8-bit AdamW) update each parameter exactly as their step over all of
them would. What changes: gradient clipping caps each parameter's gradient norm (the global norm needs every
gradient at once), gradients cannot be accumulated over micro-batches, and fp16's loss scaler (which must see every
gradient before it steps) cannot be used.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class StepInBackward:
    """Post-accumulate-grad hooks that step `optimizer` one parameter at a time during `loss.backward()`.

    Args:
        optimizer: the run's optimizer (not a wrapper: its `param_groups` are swapped for one step at a time).
        params: the parameters to step; each must belong to one of the optimizer's groups.
        max_grad_norm: cap of each parameter's gradient norm before its step (0: no clipping).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter], max_grad_norm: float):
        self.optimizer = optimizer
        self.max_grad_norm = max_grad_norm
        self._group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
        self._handles = []
        self.stepped = 0  # parameters stepped so far (what the hooks did, for the tests)
        for param in params:
            if id(param) not in self._group_of:
                raise ValueError("every parameter stepped in the backward pass must belong to the optimizer")
            self._handles.append(param.register_post_accumulate_grad_hook(self._step))

    def _step(self, param: torch.Tensor) -> None:
        grad = param.grad
        if grad is None:
            return
        if self.max_grad_norm > 0:  # as torch.nn.utils.clip_grad_norm_ over this one tensor, without a sync
            norm = torch.linalg.vector_norm(grad.detach(), dtype=torch.float32)
            grad.detach().mul_((self.max_grad_norm / (norm + 1e-6)).clamp(max=1.0).to(grad.dtype))
        group = self._group_of[id(param)]
        view = {**group, "params": [param]}
        groups = self.optimizer.param_groups
        self.optimizer.param_groups = [view]
        try:
            self.optimizer.step()
        finally:
            self.optimizer.param_groups = groups
        param.grad = None
        self.stepped += 1

    def remove(self) -> None:
        """Take the hooks off (the trainer's `close()`)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
