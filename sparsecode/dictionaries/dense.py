r"""A dense operator :math:`P` given by a (batched) matrix, the bound form of dense and dynamic dictionaries.

``weight`` has shape ``(*batch, n, m)`` (``n`` signal features, ``m`` atoms, optional leading batch/head dims).
Two signal layouts are supported:

* ``stacked=False``: a signal is ``x[..., *batch, n]``, one vector per matrix (e.g. one vector per head);
* ``stacked=True``: ``x[..., *batch, S, n]``, ``S`` signals share each matrix (e.g. the ``d`` channels of a head
  in VARS-D), so every product is a single batched matmul.

``decode(u) = P u``, ``encode(x) = P^T x``, ``gram(u) = P^T P u`` through the cached Gram matrix
:math:`G = P^\top P` when it is cheaper than two products. ``gradient_step(u, b, L)`` fuses a whole gradient step
:math:`u - (Gu - b)/L = u\,(I - G/L) + b/L` into one matrix multiply-add for a single matrix and a scalar :math:`L`.
"""
from __future__ import annotations

import torch

from .._validation import check_trailing_shape
from ..lipschitz import power_iteration

__all__ = ["DenseOperator"]


class DenseOperator:
    r"""The operator :math:`u \mapsto P u` for a matrix (or a batch of matrices) ``weight``.

    Args:
        weight: ``(*batch, n_features, n_atoms)``.
        stacked: signal layout (see the module docstring).
        precompute_gram: cache :math:`G = P^\top P` (``None``: when ``n_atoms <= 2 * n_features`` or stacked).
        lipschitz: ``"power"``, ``"exact"`` (batched SVD), ``"row_sum"`` (:math:`\max_i \sum_j |G_{ij}|`, a cheap
            upper bound) or a positive number.
        warm_start: an object whose ``_power_vector`` attribute holds the previous power-iteration vector (read
            for the start, written back after): the owning dictionary, so warm starts persist across calls.
        power_iterations: number of power iterations (a third of it, at least 5, when warm-started).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        *,
        stacked: bool = False,
        precompute_gram: bool | None = None,
        lipschitz: str | float = "power",
        warm_start: object | None = None,
        power_iterations: int = 30,
    ) -> None:
        if weight.ndim < 2:
            raise ValueError(f"weight must have shape (*batch, n_features, n_atoms), got {tuple(weight.shape)}")
        self.weight = weight
        self.stacked = stacked
        self.n_features, self.n_atoms = int(weight.shape[-2]), int(weight.shape[-1])
        self.batch_shape = tuple(weight.shape[:-2])
        if precompute_gram is None:
            precompute_gram = stacked or self.n_atoms <= 2 * self.n_features
        self._gram_matrix = weight.transpose(-1, -2) @ weight if precompute_gram else None
        self.lipschitz_mode = lipschitz
        self.warm_start = warm_start
        self.power_iterations = power_iterations
        # gradient_step's per-solve constants, keyed by the identity of the L (and b) tensors they were built from
        self._step_matrix_key: torch.Tensor | None = None
        self._step_matrix: torch.Tensor | None = None
        self._step_offset_key: tuple[torch.Tensor, torch.Tensor] | None = None
        self._step_offset: torch.Tensor | None = None

    # the "one vector per matrix" layout needs a singleton signal axis for matmul, except for a single matrix
    def _apply(self, mat: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.stacked or mat.ndim == 2:
            return v @ mat
        return (v.unsqueeze(-2) @ mat).squeeze(-2)

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        return self._apply(self.weight.transpose(-1, -2), u)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(self.weight, x)

    def gram(self, u: torch.Tensor) -> torch.Tensor:
        if self._gram_matrix is not None:
            return self._apply(self._gram_matrix, u)  # G is symmetric: u G = (G u^T)^T
        return self.encode(self.decode(u))

    def gradient_step(self, u: torch.Tensor, b: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
        r"""The gradient step :math:`u - (P^\top P u - b)/L` of :math:`\tfrac12\|Pu - x\|^2` with :math:`b = P^\top x`.

        For a single matrix with a cached Gram matrix and a scalar ``L`` it is one fused multiply-add
        :math:`u\,M + c` with :math:`M = I - G/L` and :math:`c = b/L`, both built once per ``(L, b)`` pair (solvers
        pass the same tensors at every iteration); otherwise it is computed term by term.

        Args:
            u: codes, ``(..., n_atoms)``.
            b: :math:`P^\top x`, the shape of ``u``.
            L: the step-size constant, a tensor broadcastable against ``u``.
        """
        fused = (self._gram_matrix is not None and self._gram_matrix.ndim == 2 and L.numel() == 1
                 and u.shape == b.shape and u.ndim == 2 and u.dtype == self._gram_matrix.dtype == b.dtype)
        if not fused:
            return u - (self.gram(u) - b) / L
        # constants built without a graph (e.g. the no-grad part of a truncated solve) are rebuilt once grad is on
        stale = (torch.is_grad_enabled() and self._gram_matrix.requires_grad and self._step_matrix is not None
                 and not self._step_matrix.requires_grad)
        if self._step_matrix_key is not L or stale:
            g = self._gram_matrix
            self._step_matrix = torch.eye(g.shape[0], dtype=g.dtype, device=g.device) - g / L.to(g.dtype)
            self._step_matrix_key = L
        key = self._step_offset_key
        stale = (torch.is_grad_enabled() and b.requires_grad and self._step_offset is not None
                 and not self._step_offset.requires_grad)
        if key is None or key[0] is not b or key[1] is not L or stale:
            self._step_offset = b / L
            self._step_offset_key = (b, L)
        return torch.addmm(self._step_offset, u, self._step_matrix)

    def gram_matrix(self) -> torch.Tensor:
        r""":math:`G = P^\top P`, shape ``(*batch, n_atoms, n_atoms)``."""
        return self._gram_matrix if self._gram_matrix is not None else self.weight.transpose(-1, -2) @ self.weight

    def _broadcast(self, per_matrix: torch.Tensor) -> torch.Tensor:
        # per_matrix: (*batch,) -> broadcastable against codes of either layout
        extra = 2 if self.stacked else 1
        return per_matrix.reshape(self.batch_shape + (1,) * extra)

    def lipschitz(self) -> torch.Tensor:
        r"""Upper bound on :math:`\|P^\top P\|_2` per matrix, detached, broadcastable against codes."""
        mode = self.lipschitz_mode
        w = self.weight.detach()
        if not isinstance(mode, str):
            return torch.tensor(float(mode), dtype=w.dtype, device=w.device)
        if mode == "exact":
            top = torch.linalg.matrix_norm(w.float() if w.dtype in (torch.float16, torch.bfloat16) else w, ord=2)
            return self._broadcast(top.to(w.dtype) ** 2 * (1 + 1e-6))
        if mode == "row_sum":
            g = self.gram_matrix().detach()
            return self._broadcast(g.abs().sum(dim=-1).amax(dim=-1))
        if mode != "power":
            raise ValueError(f"lipschitz must be 'power', 'exact', 'row_sum' or a positive number, got {mode!r}")
        dtype = w.dtype if w.dtype in (torch.float32, torch.float64) else torch.float32
        gm = self.gram_matrix().detach().to(dtype)
        shape = self.batch_shape + (self.n_atoms,)
        init = getattr(self.warm_start, "_power_vector", None)
        warm = init is not None and tuple(init.shape) == shape
        L, v = power_iteration(lambda v: (v.unsqueeze(-2) @ gm).squeeze(-2), shape, 1,
                               n_iter=max(self.power_iterations // 3, 5) if warm else self.power_iterations,
                               init=init if warm else None, dtype=dtype, device=w.device)
        if self.warm_start is not None:
            self.warm_start._power_vector = v
        return self._broadcast(L.squeeze(-1).to(w.dtype))

    def check_signal(self, x: torch.Tensor, name: str = "x") -> None:
        """Check that ``x`` has the layout this operator expects."""
        if self.stacked or self.weight.ndim > 2:
            lead = self.batch_shape + ((x.shape[-2],) if self.stacked and x.ndim >= 2 else ())
            layout = "(..., *batch, S, n_features)" if self.stacked else "(..., *batch, n_features)"
            check_trailing_shape(x, name, lead + (self.n_features,), f"{layout} with batch={self.batch_shape}")
        else:
            check_trailing_shape(x, name, (self.n_features,), "(..., n_features)")

    def code_shape(self, signal_shape) -> tuple[int, ...]:
        return tuple(signal_shape[:-1]) + (self.n_atoms,)
