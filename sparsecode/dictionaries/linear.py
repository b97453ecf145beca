r"""Dense (fully connected) dictionary :math:`P \in \mathbb R^{n \times m}`, optionally one per head."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .._validation import check_float_tensor, check_positive_int
from .base import Dictionary, LipschitzSpec
from .dense import DenseOperator

__all__ = ["LinearDictionary"]


class LinearDictionary(Dictionary):
    r"""A dense dictionary: :math:`P u` with :math:`P` of shape ``(n_features, n_atoms)``, or
    ``(n_heads, n_features, n_atoms)`` for many small dictionaries applied head by head.

    Signals are ``(..., n_features)`` (or ``(..., n_heads, n_features)`` with heads); codes ``(..., n_atoms)``
    (``(..., n_heads, n_atoms)``). Atoms are initialised i.i.d. Gaussian with unit-norm columns.

    Args:
        n_features: signal dimension ``n`` (omit when ``weight`` is given).
        n_atoms: number of atoms ``m`` (omit when ``weight`` is given).
        weight: an explicit matrix, shape ``(n, m)`` or ``(H, n, m)``.
        n_heads: number of independent dictionaries (with sizes; inferred from a 3-D ``weight``).
        learnable: register ``weight`` as an ``nn.Parameter`` (else a buffer).
        normalize_atoms: rescale every atom (column) to unit :math:`\ell_2` norm at each use.
        lipschitz: ``"power"``, ``"exact"``, ``"row_sum"``, ``"perron"`` or a positive number (see
            :class:`DenseOperator`).
        generator: random generator for the initialisation.
        device, dtype: where to build the weight.
    """

    _lipschitz_modes = ("power", "exact", "row_sum", "perron")

    def __init__(
        self,
        n_features: int | None = None,
        n_atoms: int | None = None,
        *,
        weight: torch.Tensor | None = None,
        n_heads: int | None = None,
        learnable: bool = True,
        normalize_atoms: bool = False,
        lipschitz: LipschitzSpec = "power",
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(lipschitz=lipschitz)
        if weight is not None:
            if n_features is not None or n_atoms is not None:
                raise ValueError("give either weight= or (n_features, n_atoms), not both")
            check_float_tensor(weight, "weight", min_ndim=2)
            if weight.ndim > 3:
                raise ValueError(f"weight must have shape (n_features, n_atoms) or (n_heads, n_features, n_atoms), "
                                 f"got {tuple(weight.shape)}")
            if n_heads is not None and (weight.ndim != 3 or weight.shape[0] != n_heads):
                raise ValueError(f"n_heads={n_heads} does not match weight of shape {tuple(weight.shape)}")
            w = weight.detach().clone().to(device=device, dtype=dtype or weight.dtype)
        else:
            check_positive_int(n_features, "n_features")
            check_positive_int(n_atoms, "n_atoms")
            check_positive_int(n_heads, "n_heads", allow_none=True)
            shape = ((n_heads,) if n_heads else ()) + (n_features, n_atoms)
            w = torch.randn(shape, generator=generator, dtype=dtype or torch.get_default_dtype())
            w = (w / w.norm(dim=-2, keepdim=True)).to(device)
        if learnable:
            self.weight = nn.Parameter(w)
        else:
            self.register_buffer("weight", w)
        self.normalize_atoms = normalize_atoms

    @property
    def n_features(self) -> int:
        return int(self.weight.shape[-2])

    @property
    def n_atoms(self) -> int:
        return int(self.weight.shape[-1])

    @property
    def n_heads(self) -> int | None:
        return int(self.weight.shape[0]) if self.weight.ndim == 3 else None

    def matrix(self) -> torch.Tensor:
        """The matrix :math:`P` as used (unit-norm atoms when ``normalize_atoms``)."""
        w = self.weight
        if self.normalize_atoms:
            w = w / w.norm(dim=-2, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
        return w

    def bind(self, context: Any = None) -> DenseOperator:
        """The operator for one solve, with the Gram matrix cached when that is cheaper."""
        super().bind(context)
        return DenseOperator(self.matrix(), lipschitz=self.lipschitz_mode, warm_start=self,
                             power_iterations=self.power_iterations)

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        return DenseOperator(self.matrix(), precompute_gram=False).decode(u)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return DenseOperator(self.matrix(), precompute_gram=False).encode(x)

    def lipschitz(self) -> torch.Tensor:
        return self.bind().lipschitz()

    def check_signal(self, x: torch.Tensor, name: str = "x") -> None:
        DenseOperator(self.weight.detach(), precompute_gram=False).check_signal(x, name)

    def code_shape(self, signal_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(signal_shape[:-1]) + (self.n_atoms,)

    def probe_shape(self) -> tuple[tuple[int, ...], int]:
        return ((self.n_heads,) if self.n_heads else ()) + (self.n_atoms,), 1

    def extra_repr(self) -> str:
        heads = f"n_heads={self.n_heads}, " if self.n_heads else ""
        return f"{heads}n_features={self.n_features}, n_atoms={self.n_atoms}, lipschitz={self.lipschitz_mode!r}"
