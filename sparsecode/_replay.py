"""Higher-order gradients for hand-written backward passes.

A custom ``torch.autograd.Function`` whose backward uses buffers it fills in place (or intermediate results of its
forward pass) cannot be differentiated again. When the backward pass is itself recorded (``create_graph=True``,
grad mode on inside ``backward``), such a function instead calls :func:`replay_backward`: it recomputes its forward
pass from the saved inputs with plain differentiable operations and lets autograd differentiate that, with the graph
kept. First-order backward passes keep the fast hand-written path.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

__all__ = ["replay_backward"]


def replay_backward(forward: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor], needs: Sequence[bool],
                    grad: torch.Tensor | tuple[torch.Tensor, ...], *args) -> tuple[torch.Tensor | None, ...]:
    """The derivatives of ``forward(*inputs, *args)`` against ``grad``, by autograd through a recomputation, with the
    graph kept (what a backward pass that is differentiated again needs).

    Args:
        forward: the function's forward pass written with differentiable operations.
        inputs: its tensor inputs, as saved by the function (still attached to the outer graph).
        needs: ``ctx.needs_input_grad`` for those inputs.
        grad: the gradient of the output (a tuple of gradients when ``forward`` returns a tuple of outputs).
        args: further (non-tensor) arguments of ``forward``.

    Returns:
        one derivative per input (``None`` where not needed).
    """
    with torch.enable_grad():
        leaves = [x if x.requires_grad else x.detach().requires_grad_(need) for x, need in zip(inputs, needs)]
        out = forward(*leaves, *args)
        wanted = [x for x, need in zip(leaves, needs) if need]
        grads = iter(torch.autograd.grad(out, wanted, grad, create_graph=True, allow_unused=True))
    return tuple(next(grads) if need else None for need in needs)
