r"""Figure: ISTA vs FISTA vs LCA on one Lasso problem — objective gap and KKT residual per iteration.

The problem: a 64 × 256 Gaussian dictionary with unit-norm atoms (seed 0), a code with 8 non-zeros, noise of standard
deviation 0.05, :math:`\lambda = 0.05`, in float64. :math:`F^\star` comes from FISTA with restart run to a relative KKT
residual of 1e-12.

Usage::

    python docs/scripts/convergence.py                 # writes docs/assets/figures/convergence.png
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from sparsecode import FISTA, ISTA, LCA, LinearDictionary, SoftThreshold, Solver, SparseReconstruction, objective

from _figure_io import FIGURE_DIR, plt, save_figure

__all__ = ["LassoProblem", "make_problem", "convergence_curves", "plot_convergence", "main"]


@dataclass
class LassoProblem:
    """One Lasso instance :math:`\\min_u \\tfrac12\\|Pu - x\\|^2 + \\lambda\\|u\\|_1` and its optimal value."""

    dictionary: LinearDictionary
    x: torch.Tensor
    lam: float
    optimum: float


def make_problem(n_features: int = 64, n_atoms: int = 256, n_nonzero: int = 8, noise: float = 0.05,
                 lam: float = 0.05, seed: int = 0) -> LassoProblem:
    """Draw the Lasso instance described in the module docstring and solve it to high accuracy.

    Args:
        n_features: signal dimension.
        n_atoms: number of atoms.
        n_nonzero: non-zeros of the planted code.
        noise: standard deviation of the additive Gaussian noise.
        lam: the penalty weight.
        seed: seed of every random draw.
    """
    g = torch.Generator().manual_seed(seed)
    dictionary = LinearDictionary(n_features, n_atoms, generator=g, dtype=torch.float64, lipschitz="exact",
                                  learnable=False)
    support = torch.randperm(n_atoms, generator=g)[:n_nonzero]
    u_true = torch.zeros(1, n_atoms, dtype=torch.float64)
    u_true[0, support] = torch.randn(n_nonzero, generator=g, dtype=torch.float64)
    with torch.no_grad():
        x = dictionary.decode(u_true) + noise * torch.randn(1, n_features, generator=g, dtype=torch.float64)
        reference = SparseReconstruction(dictionary, FISTA(max_iter=50_000, tol=1e-12, restart=True),
                                         SoftThreshold(lam))
        result = reference.solve(x, trace=False)
    if not bool(result.converged.all()):
        raise RuntimeError("the reference solve did not converge; raise its max_iter")
    optimum = float(objective(dictionary.bind(), x, result.code, SoftThreshold(lam)))
    return LassoProblem(dictionary, x, lam, optimum)


def convergence_curves(problem: LassoProblem, solvers: dict[str, Solver]) -> dict[str, dict[str, torch.Tensor]]:
    r"""Run every solver on ``problem`` with ``trace=True``.

    Returns:
        ``{name: {"gap": F(u_k) - F*, "kkt": KKT residual}}``, each a 1-D tensor over iterations.
    """
    curves = {}
    for name, solver in solvers.items():
        layer = SparseReconstruction(problem.dictionary, solver, SoftThreshold(problem.lam))
        with torch.no_grad():
            result = layer.solve(problem.x, trace=True)
        curves[name] = {"gap": result.trace.objective[:, 0] - problem.optimum, "kkt": result.trace.kkt[:, 0]}
    return curves


def default_solvers(n_iter: int) -> dict[str, Solver]:
    """The solvers compared in the figure, each run for exactly ``n_iter`` iterations (no tolerance)."""
    return {
        "ISTA": ISTA(max_iter=n_iter),
        "FISTA": FISTA(max_iter=n_iter),
        "FISTA + restart": FISTA(max_iter=n_iter, restart=True),
        "LCA (VARS form, Euler)": LCA(max_iter=n_iter, form="vars"),
        "LCA (Rozell, Euler)": LCA(max_iter=n_iter, form="rozell"),
    }


def plot_convergence(curves: dict[str, dict[str, torch.Tensor]], problem: LassoProblem) -> "plt.Figure":
    """Two log-scale panels: the objective gap and the KKT residual against the iteration."""
    fig, (ax_gap, ax_kkt) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    tiny = 1e-16
    for name, curve in curves.items():
        k = torch.arange(1, len(curve["gap"]) + 1)
        style = "--" if name.startswith("LCA") else "-"  # Rozell's LCA with dt = 1/L nearly retraces ISTA
        ax_gap.semilogy(k, curve["gap"].clamp_min(tiny) / abs(problem.optimum), style, label=name)
        ax_kkt.semilogy(k, curve["kkt"].clamp_min(tiny), style, label=name)
    ax_gap.set(xlabel="iteration k", ylabel=r"$(F(u_k) - F^\star) / F^\star$", title="objective gap")
    ax_kkt.set(xlabel="iteration k", ylabel="KKT residual (max-norm)", title="optimality")
    for ax in (ax_gap, ax_kkt):
        ax.grid(True, which="both", alpha=0.3)
    n, m = problem.dictionary.n_features, problem.dictionary.n_atoms
    ax_kkt.legend(fontsize=8)
    fig.suptitle(f"One Lasso problem: P is {n}×{m}, λ = {problem.lam:g}, float64", fontsize=10)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--out", type=Path, default=FIGURE_DIR / "convergence.png")
    args = parser.parse_args()
    problem = make_problem()
    curves = convergence_curves(problem, default_solvers(args.iterations))
    for name, curve in curves.items():
        print(f"{name:>24}: gap after {args.iterations} iterations = {float(curve['gap'][-1]):.3e}, "
              f"KKT = {float(curve['kkt'][-1]):.3e}")
    print("wrote", save_figure(plot_convergence(curves, problem), args.out))


if __name__ == "__main__":
    main()
