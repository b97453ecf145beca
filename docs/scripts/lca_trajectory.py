r"""Figure (concepts, "The layer as an ODE"): the VARS dynamics (paper Eq. 8–9) settle on the Lasso solution.

One signal, a 16 × 24 Gaussian dictionary with unit-norm atoms (seed 0), :math:`\lambda = 0.3`, float64. The two
populations are integrated with ``LCA(form="vars")`` (Euler, its default stable step) one step at a time through the
solver's public ``init_state`` / ``step`` / ``code`` methods. Left: the gated code :math:`g(u(t))` entry by entry, with
the Lasso solution (FISTA to a KKT residual of 1e-12) dashed. Right: the distance of :math:`g(u(t))` and :math:`z(t)`
to their equilibria :math:`\tilde u^\star` and :math:`z^\star = P\tilde u^\star + x` (Eq. 10–11).

Usage::

    python docs/scripts/lca_trajectory.py        # writes docs/assets/figures/lca_trajectory.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from sparsecode import FISTA, LCA, LinearDictionary, SoftThreshold, SparseReconstruction

from _figure_io import FIGURE_DIR, plt, save_figure

__all__ = ["vars_trajectory", "main"]


def vars_trajectory(n_steps: int = 1500, lam: float = 0.3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Integrate the VARS dynamics and return the trajectory and the Lasso solution.

    Returns:
        ``{"t": (n_steps + 1,), "code": (n_steps + 1, m), "z": (n_steps + 1, n), "lasso": (m,), "z_star": (n,)}``.
    """
    g = torch.Generator().manual_seed(seed)
    dictionary = LinearDictionary(16, 24, generator=g, dtype=torch.float64, learnable=False, lipschitz="exact")
    x = torch.randn(1, 16, generator=g, dtype=torch.float64)
    threshold = SoftThreshold(lam)
    with torch.no_grad():
        lasso = SparseReconstruction(dictionary, FISTA(max_iter=20_000, tol=1e-12, restart=True), threshold)
        u_star = lasso.solve(x).code
        z_star = dictionary.decode(u_star) + x
        solver = LCA(form="vars", max_iter=n_steps)
        op = dictionary.bind()
        b = op.encode(x)
        L = solver.lipschitz(op, x)
        state = solver.init_state(op, x, b, threshold, L, torch.zeros_like(b))
        codes, zs = [solver.code(state, threshold, L)], [state["z"]]
        for _ in range(n_steps):
            state, _ = solver.step(op, x, b, threshold, L, state, need_measure=False)
            codes.append(solver.code(state, threshold, L))
            zs.append(state["z"])
    dt = float(solver.time_step(L))
    return {"t": dt * torch.arange(n_steps + 1, dtype=torch.float64), "code": torch.cat(codes), "z": torch.cat(zs),
            "lasso": u_star[0], "z_star": z_star[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=FIGURE_DIR / "lca_trajectory.png")
    args = parser.parse_args()
    tr = vars_trajectory(args.steps)
    fig, (ax_code, ax_dist) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    active = torch.nonzero(tr["lasso"] != 0).flatten().tolist()
    for k in range(tr["code"].shape[1]):
        color = plt.cm.tab20(active.index(k) % 20) if k in active else "0.75"
        ax_code.plot(tr["t"], tr["code"][:, k], color=color, lw=1.3 if k in active else 0.8)
        if k in active:
            ax_code.axhline(float(tr["lasso"][k]), color=color, ls="--", lw=0.9)
    ax_code.set(xlabel="time t", ylabel=r"$g(u(t))_k$",
                title=f"gated code: {len(active)} active atoms (colour), Lasso solution dashed")
    code_error = (tr["code"] - tr["lasso"]).abs().amax(dim=1)
    z_error = (tr["z"] - tr["z_star"]).abs().amax(dim=1)
    ax_dist.semilogy(tr["t"], code_error.clamp_min(1e-16), label=r"$\|g(u(t)) - \tilde u^\star\|_\infty$")
    ax_dist.semilogy(tr["t"], z_error.clamp_min(1e-16), label=r"$\|z(t) - z^\star\|_\infty$")
    ax_dist.set(xlabel="time t", title="distance to the equilibrium of Eq. 10-11")
    ax_dist.grid(True, which="both", alpha=0.3)
    ax_dist.legend(fontsize=9)
    print(f"after t = {float(tr['t'][-1]):.1f}: code error {float(code_error[-1]):.2e}, "
          f"z error {float(z_error[-1]):.2e}")
    print("wrote", save_figure(fig, args.out))


if __name__ == "__main__":
    main()
