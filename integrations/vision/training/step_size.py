"""The VARS-S step-size refresh: call ``refresh_step_size(momentum)`` on every module that offers it."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["refresh_step_sizes", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP / DataParallel / ``torch.compile`` wrappers (the model itself when not wrapped).

    Args:
        model: A possibly wrapped model.
    """
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


@torch.no_grad()
def refresh_step_sizes(model: nn.Module, momentum: float = 0.1) -> int:
    """Call ``module.refresh_step_size(momentum)`` on every submodule of the unwrapped ``model`` that has it.

    A VARS-S layer refreshes its running estimate ``L ← (1 − momentum)·L + momentum·L̂`` of the Lipschitz constant
    of its dictionary (the ISTA step is ``1/L``). Works whether or not ``model`` is DDP-wrapped. Returns how many
    modules were refreshed.

    Args:
        model: The model (wrapped or not).
        momentum: Weight of the new estimate, in [0, 1].
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum!r}")
    count = 0
    for module in unwrap_model(model).modules():
        refresh = getattr(module, "refresh_step_size", None)
        if callable(refresh):
            refresh(momentum)
            count += 1
    return count
