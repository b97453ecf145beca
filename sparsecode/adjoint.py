r"""Operator checks: the dense matrix of any operator and the relative error of its adjoint.

For an operator :math:`P` (``decode``) with analysis map :math:`P^\top` (``encode``), :func:`materialize` returns the
matrix :math:`P \in \mathbb R^{n_{signal}\times n_{code}}` column by column (:math:`P e_j` for every code basis vector
:math:`e_j`), and :func:`check_adjoint` measures how far ``encode`` is from the exact adjoint of ``decode``:

.. math:: \frac{|\langle P u, x\rangle - \langle u, P^\top x\rangle|}{\max(\|Pu\|\,\|x\|,\ \|u\|\,\|P^\top x\|)} .
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

__all__ = ["materialize", "check_adjoint"]


def _operator_dtype_device(op: object) -> tuple[torch.dtype, torch.device]:
    """The real dtype and the device of an operator's first floating tensor (parameters, buffers, ``weight``,
    ``kernel``, then its ``parts`` or owning ``dictionary``)."""
    tensors: list[torch.Tensor] = []
    if isinstance(op, nn.Module):
        tensors += list(op.parameters()) + list(op.buffers())
    for name in ("weight", "kernel"):
        t = getattr(op, name, None)
        if isinstance(t, torch.Tensor):
            tensors.append(t)
    for t in tensors:
        if t.is_floating_point():
            return t.dtype, t.device
        if t.is_complex():
            return t.real.dtype, t.device
    for inner in list(getattr(op, "parts", ())) + [getattr(op, "dictionary", None)]:
        if inner is not None:
            return _operator_dtype_device(inner)
    return torch.get_default_dtype(), torch.device("cpu")


def _check_shape(signal_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(signal_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"signal_shape must be a non-empty sequence of positive ints, got {signal_shape!r}")
    return shape


def materialize(op: object, signal_shape: Sequence[int], *, dtype: torch.dtype | None = None) -> torch.Tensor:
    r"""The dense matrix :math:`P` of a linear operator, shape ``(n_signal, n_code)``.

    Column :math:`j` is ``decode(e_j)`` flattened, for the code basis vector :math:`e_j` of the code of a signal batch
    of shape ``signal_shape`` (the code shape is read from ``encode`` of a zero signal). Meant for small instances
    (tests, inspection): it costs one ``decode`` per code entry.

    Args:
        op: anything with ``decode`` and ``encode`` (a static dictionary or a bound operator).
        signal_shape: the full signal shape, batch dimension included.
        dtype: the dtype of the probes (default: the operator's own floating dtype).
    """
    shape = _check_shape(signal_shape)
    op_dtype, device = _operator_dtype_device(op)
    dtype = dtype or op_dtype
    with torch.no_grad():
        code_shape = tuple(op.encode(torch.zeros(shape, dtype=dtype, device=device)).shape)
        n_code = math.prod(code_shape)
        columns = []
        for j in range(n_code):
            e = torch.zeros(n_code, dtype=dtype, device=device)
            e[j] = 1
            columns.append(op.decode(e.reshape(code_shape)).reshape(-1))
    return torch.stack(columns, dim=1)


def check_adjoint(op: object, signal_shape: Sequence[int], *, n_trials: int = 3, dtype: torch.dtype | None = None,
                  generator: torch.Generator | None = None) -> float:
    r"""Relative adjoint error :math:`|\langle Pu, x\rangle - \langle u, P^\top x\rangle| /
    \max(\|Pu\|\|x\|, \|u\|\|P^\top x\|)`, the worst over ``n_trials`` random pairs ``(u, x)``.

    Float64 operators give errors near 1e-16 when ``encode`` is the exact adjoint of ``decode``.

    Args:
        op: anything with ``decode`` and ``encode``.
        signal_shape: the full signal shape, batch dimension included.
        n_trials: number of random pairs.
        dtype: probe dtype (default: the operator's own floating dtype).
        generator: random generator for the probes.
    """
    shape = _check_shape(signal_shape)
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive int, got {n_trials!r}")
    op_dtype, device = _operator_dtype_device(op)
    dtype = dtype or op_dtype
    worst = 0.0
    with torch.no_grad():
        for _ in range(n_trials):
            x = torch.randn(shape, dtype=dtype, generator=generator).to(device)
            b = op.encode(x)
            u = torch.randn(b.shape, dtype=dtype, generator=generator).to(device)
            pu = op.decode(u)
            lhs, rhs = (pu * x).sum(), (u * b).sum()
            scale = max(float(pu.norm() * x.norm()), float(u.norm() * b.norm()), torch.finfo(dtype).tiny)
            worst = max(worst, abs(float(lhs - rhs)) / scale)
    return worst
