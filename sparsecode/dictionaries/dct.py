r"""Orthonormal DCT dictionary (1-D or 2-D), through ``torch-dct``.

:math:`P` is the inverse orthonormal DCT-II, so :math:`P^\top = P^{-1}` is the forward DCT, :math:`P^\top P = I` and
:math:`L = 1` exactly. The Lasso then has the closed form :math:`u^\star = T_\lambda(P^\top x)`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch_dct

from .._validation import check_trailing_shape
from .base import Dictionary

__all__ = ["DCTDictionary"]


class DCTDictionary(Dictionary):
    r"""Orthonormal DCT basis: ``decode`` = inverse DCT, ``encode`` = DCT (type II, ``norm="ortho"``).

    Signals and codes have the same shape: ``(..., n)`` for ``ndim=1``, ``(..., h, w)`` for ``ndim=2``.

    Args:
        size: ``n`` (1-D) or ``(h, w)`` (2-D).
        ndim: 1 or 2 (inferred from ``size`` when it is a pair).
    """

    def __init__(self, size: int | Sequence[int], ndim: int | None = None) -> None:
        super().__init__(lipschitz=1.0)
        sizes = (size,) if isinstance(size, int) else tuple(int(s) for s in size)
        ndim = ndim if ndim is not None else len(sizes)
        if ndim not in (1, 2) or len(sizes) != ndim or any(s < 1 for s in sizes):
            raise ValueError(f"size must be a positive int (ndim=1) or a pair of positive ints (ndim=2), "
                             f"got size={size!r}, ndim={ndim!r}")
        self.size = sizes
        self.ndim = ndim

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        return torch_dct.idct(u, norm="ortho") if self.ndim == 1 else torch_dct.idct_2d(u, norm="ortho")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch_dct.dct(x, norm="ortho") if self.ndim == 1 else torch_dct.dct_2d(x, norm="ortho")

    def gram(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`P^\\top P = I`."""
        return u

    def lipschitz(self) -> torch.Tensor:
        """Exactly 1 (orthonormal basis)."""
        return torch.ones(())

    def check_signal(self, x: torch.Tensor, name: str = "x") -> None:
        check_trailing_shape(x, name, self.size, "(..., n)" if self.ndim == 1 else "(..., h, w)")

    def code_shape(self, signal_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(signal_shape)

    def probe_shape(self) -> tuple[tuple[int, ...], int]:
        return self.size, self.ndim

    def extra_repr(self) -> str:
        return f"size={self.size}"
