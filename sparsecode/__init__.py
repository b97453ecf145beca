r"""sparsecode — sparse reconstruction as a composable PyTorch layer.

.. math:: u^\star = \arg\min_u \tfrac12\|P u - x\|_2^2 + \lambda R(u),\qquad z = P u^\star\ (+\,x)

assembled from a dictionary :math:`P`, a solver and a threshold (the prox of :math:`\lambda R`).
"""
from __future__ import annotations

from .adjoint import check_adjoint, materialize
from .dictionaries import (
    DICTIONARIES,
    ConcatDictionary,
    ConvDictionary,
    DCTDictionary,
    DenseOperator,
    Dictionary,
    FFTConvDictionary,
    LinearDictionary,
    Operator,
    PerformerDictionary,
    positive_random_features,
)
from .differentiation import implicit_code, proximal_gradient_map
from .layer import DIFFERENTIATION_MODES, SparseReconstruction
from .lipschitz import power_iteration
from .objective import kkt_residual, objective
from .result import SolveResult, SolveTrace
from .solvers import (ADMM, FISTA, ISTA, LCA, SOLVERS, CoordinateDescent, Homotopy, LearnedISTA, Solver, SpaRSA,
                      get_solver)
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
    "ConvDictionary",
    "FFTConvDictionary",
    "PerformerDictionary",
    "ConcatDictionary",
    "positive_random_features",
    "DICTIONARIES",
    # solvers
    "Solver",
    "ISTA",
    "FISTA",
    "ADMM",
    "Homotopy",
    "CoordinateDescent",
    "LCA",
    "LearnedISTA",
    "SpaRSA",
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
    "materialize",
    "check_adjoint",
    # differentiation
    "implicit_code",
    "proximal_gradient_map",
]
