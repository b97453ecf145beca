"""Solvers, one file each, looked up by name through :data:`SOLVERS`."""
from __future__ import annotations

from .admm import ADMM
from .base import INITS, Solver
from .coordinate_descent import CoordinateDescent
from .fista import FISTA
from .homotopy import Homotopy
from .ista import ISTA
from .lca import LCA, LCA_FORMS
from .learned import LEARNED_STEP_SIZES, LearnedISTA
from .sparsa import SpaRSA

__all__ = ["Solver", "ISTA", "FISTA", "ADMM", "CoordinateDescent", "Homotopy", "LCA", "LearnedISTA", "SpaRSA",
           "SOLVERS", "get_solver", "INITS", "LCA_FORMS", "LEARNED_STEP_SIZES"]

#: name → solver class, so configurations can say ``solver="fista"``
SOLVERS: dict[str, type[Solver]] = {"ista": ISTA, "fista": FISTA, "lca": LCA, "learned_ista": LearnedISTA,
                                   "sparsa": SpaRSA, "admm": ADMM, "homotopy": Homotopy,
                                   "cd": CoordinateDescent}


def get_solver(name: str, **kwargs) -> Solver:
    """Build a solver by name (one of :data:`SOLVERS`)."""
    if name not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {name!r}")
    return SOLVERS[name](**kwargs)
