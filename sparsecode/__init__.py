r"""sparsecode — sparse reconstruction as a composable PyTorch layer.

.. math:: u^\star = \arg\min_u \tfrac12\|P u - x\|_2^2 + \lambda R(u),\qquad z = P u^\star\ (+\,x)

assembled from a dictionary :math:`P`, a solver and a threshold (the prox of :math:`\lambda R`).
"""
from __future__ import annotations

from .dictionaries import DICTIONARIES, DCTDictionary, DenseOperator, Dictionary, LinearDictionary, Operator
from .layer import DIFFERENTIATION_MODES, SparseReconstruction
from .lipschitz import power_iteration
from .objective import kkt_residual, objective
from .result import SolveResult, SolveTrace
from .solvers import FISTA, ISTA, LCA, SOLVERS, Solver, get_solver
from .thresholds import (
    THRESHOLDS,
    HardThreshold,
    NonNegSoftThreshold,
    SmoothSoftThreshold,
    SoftThreshold,
    Threshold,
    get_threshold,
)

__version__ = "0.1.0"

__all__ = [
    "SparseReconstruction",
    "DIFFERENTIATION_MODES",
    # dictionaries
    "Dictionary",
    "Operator",
    "DenseOperator",
    "LinearDictionary",
    "DCTDictionary",
    "DICTIONARIES",
    # solvers
    "Solver",
    "ISTA",
    "FISTA",
    "LCA",
    "SOLVERS",
    "get_solver",
    # thresholds
    "Threshold",
    "SoftThreshold",
    "NonNegSoftThreshold",
    "HardThreshold",
    "SmoothSoftThreshold",
    "THRESHOLDS",
    "get_threshold",
    # results and diagnostics
    "SolveResult",
    "SolveTrace",
    "objective",
    "kkt_residual",
    "power_iteration",
]
