r"""The dictionary abstraction: a linear operator :math:`P` from code space to signal space.

A dictionary provides

* ``decode(u)`` :math:`= P u` (synthesis),
* ``encode(x)`` :math:`= P^\top x` (analysis, the exact adjoint: :math:`\langle P u, x\rangle = \langle u, P^\top x\rangle`),
* ``gram(u)`` :math:`= P^\top P u` (default ``encode(decode(u))``; overridden where cheaper),
* ``lipschitz()``: an upper bound on :math:`\|P^\top P\|_2`, shaped to broadcast against codes,
* ``check_signal(x)`` / ``code_shape(signal_shape)``: the shapes it accepts,
* ``bind(context)``: the operator to use for one batch. A static dictionary returns itself (or a view with cached
  quantities such as the Gram matrix); a *dynamic* dictionary builds its atoms from ``context`` (e.g. the tokens X).

Solvers only use ``decode``, ``encode``, ``gram`` and ``lipschitz`` — the *operator protocol* — on whatever ``bind``
returns.
"""
from __future__ import annotations

import abc
from typing import Any, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from ..lipschitz import power_iteration

__all__ = ["Operator", "Dictionary", "LipschitzSpec"]

#: how a dictionary obtains its step-size bound: ``"power"`` (power iteration), ``"exact"`` (SVD, small dense only),
#: ``"row_sum"`` (max row l1-norm of the Gram matrix, a cheap bound), ``"perron"`` (Collatz–Wielandt bound, tight for
#: non-negative Gram matrices), or a positive number given by the user
LipschitzSpec = Any


@runtime_checkable
class Operator(Protocol):
    """What a solver needs from a (bound) dictionary."""

    def decode(self, u: torch.Tensor) -> torch.Tensor: ...

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def gram(self, u: torch.Tensor) -> torch.Tensor: ...

    def lipschitz(self) -> torch.Tensor: ...


def _check_lipschitz_spec(spec: LipschitzSpec, allowed: Sequence[str]) -> None:
    if isinstance(spec, str):
        if spec not in allowed:
            raise ValueError(f"lipschitz must be one of {list(allowed)} or a positive number, got {spec!r}")
    elif isinstance(spec, bool) or not isinstance(spec, (int, float)) or not spec > 0:
        raise ValueError(f"lipschitz must be one of {list(allowed)} or a positive number, got {spec!r}")


class Dictionary(nn.Module, abc.ABC):
    r"""Base class of every dictionary :math:`P`.

    Subclasses implement :meth:`decode`, :meth:`encode`, :meth:`check_signal`, :meth:`code_shape` and
    :meth:`probe_shape`; they may override :meth:`gram` and :meth:`lipschitz` with cheaper or exact forms.

    Args:
        lipschitz: ``"power"`` (default), another mode the subclass supports, or a positive number.
        power_iterations: iterations of a cold power iteration; warm starts (from the previous call) use a third.
    """

    #: whether ``bind`` needs a context (the atoms depend on the input)
    is_dynamic: bool = False
    _lipschitz_modes: tuple[str, ...] = ("power",)

    def __init__(self, *, lipschitz: LipschitzSpec = "power", power_iterations: int = 30) -> None:
        super().__init__()
        _check_lipschitz_spec(lipschitz, self._lipschitz_modes)
        self.lipschitz_mode = lipschitz
        self.power_iterations = int(power_iterations)
        self._power_vector: torch.Tensor | None = None

    # --- the operator -------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def decode(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`P u`."""

    @abc.abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`P^\top x`."""

    def gram(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`P^\top P u` (default: ``encode(decode(u))``)."""
        return self.encode(self.decode(u))

    # --- shapes -------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def check_signal(self, x: torch.Tensor, name: str = "x") -> None:
        """Raise ``ValueError`` naming ``name`` if ``x`` is not a signal this dictionary accepts."""

    @abc.abstractmethod
    def code_shape(self, signal_shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of the code of a signal batch of shape ``signal_shape``."""

    @abc.abstractmethod
    def probe_shape(self) -> tuple[tuple[int, ...], int]:
        """``(shape, vector_ndim)`` of a probe code for power iteration: leading dims index independent operators."""

    # --- step size ------------------------------------------------------------------------------------------------
    def _reference_tensor(self) -> torch.Tensor:
        for t in list(self.parameters()) + list(self.buffers()):
            if t.is_floating_point():
                return t
        return torch.empty(0)

    def lipschitz(self) -> torch.Tensor:
        r"""An upper bound on :math:`\|P^\top P\|_2`, broadcastable against codes (detached: a step size is a
        constant for differentiation)."""
        if not isinstance(self.lipschitz_mode, str):
            ref = self._reference_tensor()
            return torch.tensor(float(self.lipschitz_mode), dtype=ref.dtype if ref.is_floating_point() else None,
                                device=ref.device)
        return self._power_lipschitz()

    def _power_lipschitz(self) -> torch.Tensor:
        shape, vector_ndim = self.probe_shape()
        ref = self._reference_tensor()
        dtype = ref.dtype if ref.is_floating_point() and ref.dtype in (torch.float32, torch.float64) else torch.float32
        warm = self._power_vector is not None and tuple(self._power_vector.shape) == tuple(shape)
        n_iter = max(self.power_iterations // 3, 5) if warm else self.power_iterations
        with torch.autocast(device_type=ref.device.type, enabled=False):
            L, v = power_iteration(lambda u: self.gram(u.to(dtype)), shape, vector_ndim, n_iter=n_iter,
                                   init=self._power_vector if warm else None, dtype=dtype, device=ref.device)
        self._power_vector = v
        return L

    # --- binding ----------------------------------------------------------------------------------------------------
    def bind(self, context: Any = None) -> "Operator":
        """Return the operator for one batch. Static dictionaries ignore ``context`` (it must be ``None``)."""
        if context is not None:
            raise ValueError(f"{type(self).__name__} is static: context must be None, got {type(context).__name__}")
        return self
