"""Shared test problems (not a test module)."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import Lasso

from sparsecode import LinearDictionary

__all__ = ["unit_norm_problem", "lambda_fraction", "sklearn_lasso"]


def unit_norm_problem(seed: int, n: int, m: int, batch: int, dtype: torch.dtype = torch.float64):
    """A Gaussian ``n × m`` dictionary with unit-norm columns and ``batch`` Gaussian signals: ``(op, x, P)`` with the
    bound operator and signals in ``dtype`` and ``P`` in float64."""
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(n, m, generator=g, dtype=torch.float64)
    P = P / P.norm(dim=0, keepdim=True)
    x = torch.randn(batch, n, generator=g, dtype=torch.float64)
    return LinearDictionary(weight=P.to(dtype), learnable=False).bind(), x.to(dtype), P


def lambda_fraction(b: torch.Tensor, frac: float, nonneg: bool = False) -> float:
    """``frac`` times the median over the samples of their lambda_max, ``|P^T x|_inf`` (``max (P^T x)_+`` for the
    non-negative Lasso), from ``b = x @ P``."""
    return frac * float((b.clamp_min(0) if nonneg else b.abs()).amax(dim=1).median())


def sklearn_lasso(P: torch.Tensor, x: torch.Tensor, lam: float, positive: bool = False) -> torch.Tensor:
    """scikit-learn's ``Lasso`` fitted to tight tolerance, one sample at a time: the independent oracle. It minimises
    ``1/(2 n) ||x - P u||^2 + alpha ||u||_1`` with ``n = n_features``, so its ``alpha`` is ``lambda / n``."""
    n = P.shape[0]
    return torch.tensor(np.array([Lasso(alpha=lam / n, fit_intercept=False, positive=positive, tol=1e-15,
                                        max_iter=200_000).fit(P.numpy(), xi).coef_ for xi in x.numpy()]))
