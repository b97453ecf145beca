"""Per-sample reductions: the first dimension indexes samples, every other dimension is reduced."""
from __future__ import annotations

import torch

__all__ = ["per_sample_sum", "per_sample_max", "per_sample_dot", "per_sample_norm", "per_sample_is_zero",
           "per_sample_view", "host_read_is_free"]


def per_sample_sum(t: torch.Tensor) -> torch.Tensor:
    """:math:`\\sum_i t_{b,i}` per sample, ``(B,)`` (a 1-D tensor is already per sample)."""
    return t.flatten(1).sum(dim=1) if t.ndim > 1 else t


def per_sample_max(t: torch.Tensor) -> torch.Tensor:
    """:math:`\\max_i t_{b,i}` per sample, ``(B,)`` (a 1-D tensor is already per sample)."""
    return t.flatten(1).amax(dim=1) if t.ndim > 1 else t


def per_sample_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:math:`\\langle a_b, b_b\\rangle` per sample, ``(B,)``, in one pass (no product tensor)."""
    return torch.linalg.vecdot(a.flatten(1), b.flatten(1))


def per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    """:math:`\\|t_b\\|_2` per sample, ``(B,)``."""
    return torch.linalg.vector_norm(t.flatten(1), dim=1)


def per_sample_is_zero(t: torch.Tensor) -> torch.Tensor:
    """Whether every entry of each sample is 0, ``(B,)`` bool (a boolean reduction: no full-size temporary)."""
    return ~t.flatten(1).any(dim=1) if t.ndim > 1 else t == 0


def per_sample_view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample ``(B,)`` tensor shaped ``(B, 1, ..., 1)`` to broadcast against ``like``'s ``(B, ...)``."""
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def host_read_is_free(t: torch.Tensor) -> bool:
    """Whether reading a value of ``t`` on the host (``bool(t.any())``) costs nothing worth avoiding: ``t`` is on the
    CPU and the code is not being traced by ``torch.compile`` (where such a read would break the graph)."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling()

