"""What a solver returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["SolveResult", "SolveTrace"]


@dataclass
class SolveTrace:
    """Per-iteration diagnostics, each of shape ``(n_iter, B)``.

    Attributes:
        objective: :math:`F(u_k) = \\tfrac12\\|P u_k - x\\|^2 + \\lambda R(u_k)` per sample.
        kkt: the threshold's KKT residual (or proximal-gradient residual) at :math:`u_k`, per sample.
    """

    objective: torch.Tensor
    kkt: torch.Tensor


@dataclass
class SolveResult:
    """The outcome of a solve.

    Attributes:
        code: the code :math:`u` (shape of ``dictionary.code_shape(x.shape)``).
        n_iter: iterations the loop ran (for the whole batch).
        converged: ``(B,)`` bool, whether each sample met the tolerance (all ``False`` when no tolerance was set).
        n_iter_per_sample: ``(B,)`` iterations each sample ran before it stopped changing.
        trace: per-iteration objective and KKT residual, when requested.
        state: the solver's final internal state (e.g. LCA's populations), for inspection.
    """

    code: torch.Tensor
    n_iter: int
    converged: torch.Tensor
    n_iter_per_sample: torch.Tensor
    trace: SolveTrace | None = None
    state: dict[str, torch.Tensor] = field(default_factory=dict)
