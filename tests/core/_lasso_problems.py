"""Shared test problems (not a test module)."""
from __future__ import annotations

import torch

from sparsecode import LinearDictionary

__all__ = ["unit_norm_problem"]


def unit_norm_problem(seed: int, n: int, m: int, batch: int, dtype: torch.dtype = torch.float64):
    """A Gaussian ``n × m`` dictionary with unit-norm columns and ``batch`` Gaussian signals: ``(op, x, P)`` with the
    bound operator and signals in ``dtype`` and ``P`` in float64."""
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(n, m, generator=g, dtype=torch.float64)
    P = P / P.norm(dim=0, keepdim=True)
    x = torch.randn(batch, n, generator=g, dtype=torch.float64)
    return LinearDictionary(weight=P.to(dtype), learnable=False).bind(), x.to(dtype), P
