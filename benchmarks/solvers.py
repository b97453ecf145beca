r"""Lasso solver benchmark: time to reach a relative suboptimality of 1e-6, ours against scikit-learn and others.

Every solver minimises, for each signal :math:`x_i` of a batch and one shared dictionary :math:`P`,

.. math:: F_i(u) = \tfrac12\|P u - x_i\|_2^2 + \lambda\|u\|_1,

and a run is scored by the relative suboptimality of the batch, :math:`(\sum_i F_i(u_i) - F_i^\star) / \sum_i F_i^\star`,
evaluated in float64 whatever the solver's precision. :math:`F_i^\star` is the per-sample minimum over an untimed
reference (restarted FISTA to a tight tolerance, then polished: an exact solve of the KKT system on its support and
signs) and every code any solver produced in this run (polished ``lasso_cd`` and LARS codes included).

Problems (in the style of benchopt's Lasso benchmark): Gaussian designs with Toeplitz column correlation
:math:`\rho\in\{0, 0.6\}` (unit-norm columns, signals = design × 10%-sparse codes + noise), and 8×8 patches of
scikit-image's bundled photographs against a dictionary learned with ``MiniBatchDictionaryLearning`` (learned on
``camera()``, coded on ``astronaut()``). :math:`\lambda = c\,\lambda_{\max}` with :math:`\lambda_{\max}` the median
over the signal pool of :math:`\|P^\top x_i\|_\infty`; a batch of ``B`` signals is the first ``B`` of the pool.

Timing: everything runs in one process with the same thread count for torch, BLAS and numba; each timed call is
preceded by a warm-up, times are ``time.perf_counter`` medians over interleaved repeats. Our solvers run a fixed number
of iterations (``tol=None``): the smallest count that reaches 1e-6, found from an untimed pass that records the
objective at checkpoints (whose time, excluding the evaluations, also draws the curves); ``fista_restart_tol``,
``sparsa_tol`` and ``admm_tol`` are stopped per sample by their own tolerance (converged samples leave the batch),
``sparsa_compiled`` and ``fista_restart_compiled`` are SpaRSA and restarted FISTA with ``compile_step=True`` (each
iteration through ``torch.compile``; compilation happens in the untimed warm-up; ``--no-compile`` leaves them out),
``sparsa_polish_tol`` and ``admm_polish_tol`` the same with the support polish (``polish_every=5``: a sample whose
face is stable is solved exactly on it and stops when the KKT test certifies it), each with the largest ``tol`` that
reaches 1e-6 (half-decade grid, then three log-bisection steps), and so is ``cd_tol`` (``CoordinateDescent``:
``lasso_cd``'s algorithm, the batch in one numba-compiled loop, each sample stopped by its KKT test); ``homotopy``
(the batched LARS-Lasso path) is exact and has a single point. scikit-learn's ``lasso_cd``
is driven by ``max_iter`` (its tolerance is fixed inside ``sparse_encode``; the smallest sufficient ``max_iter`` is
found by bisection), ``celer``/``skglm`` (one fit per signal, when installed) by ``tol``; ``lasso_lars`` is exact and
has a single point; these three run for batches up to 256 only (one fit per signal is too slow beyond). Every
solver but ``lasso_cd`` gets a budget of 3× ``lasso_cd``'s time to 1e-6 (and 3000 iterations): slower is reported
as not reached.

Run ``python benchmarks/solvers.py`` (full, about 10 minutes on 2 idle cores) or ``--quick`` (seconds).
Writes ``solvers.json``, ``solvers.md`` and ``solvers.png`` into ``--out``.
"""
from __future__ import annotations

import argparse
import os
import sys


def _pin_threads_from_argv(argv: list[str]) -> int:
    # thread pools read these at import: set them before numpy / torch / numba are imported
    n = 1
    if "--threads" in argv:
        n = int(argv[argv.index("--threads") + 1])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    return n


_THREADS = _pin_threads_from_argv(sys.argv) if __name__ == "__main__" else 1

import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from sparsecode import (ADMM, FISTA, ISTA, LCA, CoordinateDescent, Homotopy, LinearDictionary, SoftThreshold,  # noqa: E402
                        Solver, SpaRSA)

__all__ = ["Problem", "Curve", "Config", "simulated_problem", "patch_problem", "per_sample_objective", "polish",
           "relative_suboptimality", "run_setting", "run_benchmark", "build_config", "markdown_table", "main"]

TARGET = 1e-6  # relative suboptimality a solver must reach
REFERENCE = "sklearn_lasso_cd/float64"  # the denominator of every ratio


# ----------------------------------------------------------------------------------------------------------------
# problems
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Problem:
    """A dictionary ``P`` (``n_features × n_atoms``, unit-norm columns) and a pool of signals ``(pool, n_features)``."""

    name: str
    P: np.ndarray
    X: np.ndarray

    @property
    def lam_max(self) -> float:
        r"""The median over the pool of :math:`\|P^\top x_i\|_\infty` (the smallest λ giving :math:`u_i = 0`)."""
        return float(np.median(np.abs(self.X @ self.P).max(axis=1)))


def simulated_problem(rho: float, n_features: int, n_atoms: int, pool: int, seed: int) -> Problem:
    r"""Gaussian design with column correlation :math:`\operatorname{corr}(P_{:,i}, P_{:,j}) = \rho^{|i-j|}`.

    Columns are normalised; signals are :math:`P w + \varepsilon` with 10%-sparse Gaussian :math:`w` and noise at
    a signal-to-noise ratio of 3.

    Args:
        rho: column correlation in ``[0, 1)``.
        n_features, n_atoms: the dictionary's shape.
        pool: number of signals.
        seed: random seed.
    """
    if not 0 <= rho < 1:
        raise ValueError(f"rho must be in [0, 1), got {rho!r}")
    rng = np.random.default_rng(seed)
    idx = np.arange(n_atoms)
    chol = np.linalg.cholesky(rho ** np.abs(idx[:, None] - idx[None, :]))
    P = rng.standard_normal((n_features, n_atoms)) @ chol.T
    P /= np.linalg.norm(P, axis=0, keepdims=True)
    W = rng.standard_normal((pool, n_atoms)) * (rng.random((pool, n_atoms)) < 0.1)
    clean = W @ P.T
    noise = rng.standard_normal(clean.shape)
    X = clean + noise * (np.linalg.norm(clean) / np.linalg.norm(noise) / 3)
    return Problem(f"gaussian_rho{rho:g}", P, X)


def patch_problem(n_atoms: int, pool: int, n_train: int, seed: int, dict_iters: int = 3) -> Problem:
    r"""8×8 patches (mean removed) of ``skimage.data.astronaut()`` against a dictionary of ``n_atoms`` atoms learned by
    ``MiniBatchDictionaryLearning`` on ``n_train`` patches of ``skimage.data.camera()``.

    Args:
        n_atoms: dictionary size (64 = complete, larger = overcomplete).
        pool: number of signals.
        n_train: patches used to learn the dictionary.
        seed: random seed (patch sampling and dictionary learning).
        dict_iters: passes of dictionary learning.
    """
    from skimage import color, data
    from sklearn.decomposition import MiniBatchDictionaryLearning
    from sklearn.feature_extraction.image import extract_patches_2d

    def patches(image: np.ndarray, count: int, rs: int) -> np.ndarray:
        p = extract_patches_2d(image, (8, 8), max_patches=count, random_state=rs).reshape(count, 64)
        return p - p.mean(axis=1, keepdims=True)

    train = patches(data.camera() / 255.0, n_train, seed)
    test = patches(color.rgb2gray(data.astronaut()), pool, seed + 1)
    learner = MiniBatchDictionaryLearning(n_components=n_atoms, alpha=0.1, batch_size=256, max_iter=dict_iters,
                                          random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P = learner.fit(train).components_.T.astype(np.float64)
    P /= np.linalg.norm(P, axis=0, keepdims=True).clip(min=1e-12)
    return Problem(f"patches8x8_k{n_atoms}", P, test)


# ----------------------------------------------------------------------------------------------------------------
# objective and reference
# ----------------------------------------------------------------------------------------------------------------
def per_sample_objective(P: np.ndarray, X: np.ndarray, U: np.ndarray, lam: float) -> np.ndarray:
    r"""Per-sample :math:`\tfrac12\|P u_i - x_i\|^2 + \lambda\|u_i\|_1` in float64, shape ``(B,)``."""
    U = np.asarray(U, dtype=np.float64)
    R = U @ P.T - X
    return 0.5 * np.einsum("ij,ij->i", R, R) + lam * np.abs(U).sum(axis=1)


def polish(P: np.ndarray, X: np.ndarray, U: np.ndarray, lam: float) -> np.ndarray:
    r"""Solve the KKT system :math:`G_{SS}u_S = (P^\top x)_S - \lambda\,\mathrm{sign}(u_S)` on each sample's support
    and signs; keep the polished code only where it keeps those signs and lowers the objective."""
    G, B = P.T @ P, X @ P
    out = U.astype(np.float64).copy()
    for i in range(U.shape[0]):
        s = np.flatnonzero(U[i])
        if s.size == 0:
            continue
        sign = np.sign(U[i, s])
        try:
            v = np.linalg.solve(G[np.ix_(s, s)], B[i, s] - lam * sign)
        except np.linalg.LinAlgError:
            continue
        if np.all(np.sign(v) == sign):
            cand = out[i].copy()
            cand[s] = v
            if per_sample_objective(P, X[i:i + 1], cand[None], lam)[0] <= \
                    per_sample_objective(P, X[i:i + 1], out[i:i + 1], lam)[0]:
                out[i] = cand
    return out


def relative_suboptimality(f: np.ndarray, f_star: np.ndarray) -> float:
    r""":math:`(\sum_i F_i - \sum_i F_i^\star) / \sum_i F_i^\star`, floored at 0."""
    return max(float((f.sum() - f_star.sum()) / f_star.sum()), 0.0)


# ----------------------------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------------------------
def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """``(seconds, result)`` of one call, by ``time.perf_counter``."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@dataclass
class Curve:
    """One solver on one setting: suboptimality-versus-time points and the time to reach :data:`TARGET`."""

    solver: str
    times: list[float] = field(default_factory=list)
    f: list[np.ndarray] = field(default_factory=list)  # per-sample objectives at each point
    budgets: list[float] = field(default_factory=list)  # iterations, max_iter or tol at each point
    target_budget: float | None = None
    target_times: list[float] = field(default_factory=list)
    target_f: np.ndarray | None = None
    note: str = ""

    def add(self, seconds: float, f: np.ndarray, budget: float) -> None:
        self.times.append(seconds)
        self.f.append(f)
        self.budgets.append(budget)


# ----------------------------------------------------------------------------------------------------------------
# our solvers: an untimed checkpoint pass finds the iteration count, then solve(max_iter=k) is timed
# ----------------------------------------------------------------------------------------------------------------
OUR_SOLVERS: dict[str, Callable[[int], Solver]] = {
    "ista": lambda k: ISTA(max_iter=k),
    "fista": lambda k: FISTA(max_iter=k),
    "fista_restart": lambda k: FISTA(max_iter=k, restart=True),
    "lca": lambda k: LCA(max_iter=k, form="vars"),
    "sparsa": lambda k: SpaRSA(max_iter=k),
    "admm": lambda k: ADMM(max_iter=k),
    # the same iterations through torch.compile (the elementwise passes fused; the products unchanged)
    "sparsa_compiled": lambda k: SpaRSA(max_iter=k, compile_step=True),
    "fista_restart_compiled": lambda k: FISTA(max_iter=k, restart=True, compile_step=True),
}

#: ours that are exact (the minimiser up to rounding, no budget to tune): a single timed point each
EXACT_SOLVERS: dict[str, Callable[[], Solver]] = {
    "homotopy": lambda: Homotopy(),
}

#: the runs of :data:`OUR_SOLVERS` that need torch.compile's CPU backend (left out by ``--no-compile``)
COMPILED_SOLVERS = ("sparsa_compiled", "fista_restart_compiled")


#: the same solvers stopped per sample by their tolerance (converged samples leave the batch)
OUR_SOLVERS_TOL: dict[str, Callable[[float, int], Solver]] = {
    "fista_restart": lambda tol, k: FISTA(max_iter=k, tol=tol, restart=True),
    "sparsa": lambda tol, k: SpaRSA(max_iter=k, tol=tol),
    "admm": lambda tol, k: ADMM(max_iter=k, tol=tol),
    # with the support polish: every 5 iterations, the exact minimiser on each sample's face once it is stable
    "sparsa_polish": lambda tol, k: SpaRSA(max_iter=k, tol=tol, polish_every=5),
    "admm_polish": lambda tol, k: ADMM(max_iter=k, tol=tol, polish_every=5),
    # coordinate descent with the Gram matrix (lasso_cd's algorithm), the batch in one compiled loop (numba)
    "cd": lambda tol, k: CoordinateDescent(max_iter=k, tol=tol),
}


class OurSolver:
    """Runs one of :data:`OUR_SOLVERS` in a given dtype on ``(P, X, λ)``."""

    def __init__(self, kind: str, dtype: torch.dtype, P: np.ndarray, X: np.ndarray, lam: float) -> None:
        self.kind, self.dtype, self.lam = kind, dtype, lam
        self.P = torch.tensor(P, dtype=dtype)
        self.X = torch.tensor(X, dtype=dtype)
        self.name = f"{kind}/{str(dtype).replace('torch.', '')}"

    def _setup(self):
        dictionary = LinearDictionary(weight=self.P, learnable=False)
        return dictionary.bind(), SoftThreshold(self.lam)

    def solve(self, n_iter: int) -> np.ndarray:
        """The code after exactly ``n_iter`` iterations (bind + step size + solve: what a user calls)."""
        with torch.no_grad():
            op, threshold = self._setup()
            return OUR_SOLVERS[self.kind](n_iter).solve(op, self.X, threshold).code.numpy()

    def solve_exact(self) -> np.ndarray:
        """The code of one of :data:`EXACT_SOLVERS` (bind + solve)."""
        with torch.no_grad():
            op, threshold = self._setup()
            return EXACT_SOLVERS[self.kind]().solve(op, self.X, threshold).code.numpy()

    def solve_to_tolerance(self, tol: float, max_iter: int) -> np.ndarray:
        """The code when every sample's optimality measure is ``<= tol`` (per-sample stopping) or ``max_iter``."""
        with torch.no_grad():
            op, threshold = self._setup()
            return OUR_SOLVERS_TOL[self.kind](tol, max_iter).solve(op, self.X, threshold).code.numpy()

    def checkpoint_pass(self, evaluate: Callable[[np.ndarray], float], max_iter: int, max_seconds: float,
                        stop_at: float) -> tuple[list[int], list[float], list[np.ndarray]]:
        """Step the solver (same iterates as ``solve``), recording ``(iteration, seconds excluding evaluation, code)``
        at checkpoints: every iteration up to 32, then every ~3%; stops at ``stop_at`` suboptimality."""
        iters, secs, codes = [], [], []
        with torch.no_grad():
            start = time.perf_counter()
            op, threshold = self._setup()
            solver = OUR_SOLVERS[self.kind](max_iter)
            b = op.encode(self.X)
            L = solver.lipschitz(op, self.X)
            state = solver.init_state(op, self.X, b, threshold, L, solver.initial_code(op, b, threshold, None))
            # solve() iterates blocks of rows of about 1 MiB of codes (cache-sized) one after the other: do the same
            per_block = max(128, (1 << 20) // (b.shape[1] * b.element_size()))
            if not getattr(solver, "_rows_independent", False):
                per_block = b.shape[0]
            blocks = [slice(i, i + per_block) for i in range(0, b.shape[0], per_block)]
            states = [{key: v[rows] for key, v in state.items()} for rows in blocks]
            inputs = [(self.X[rows], b[rows]) for rows in blocks]
            elapsed = time.perf_counter() - start
            if getattr(solver, "compile_step", False):
                # untimed: two rounds of this pass's stepping pattern on copies, so that compiling the variants it
                # reaches (blocks taking turns rebuild the operator's per-block offset) is not counted in its time
                spare = [dict(block) for block in states]
                for i in range(2):
                    for j, (x_rows, b_rows) in enumerate(inputs):
                        spare[j], _ = solver._step(op, x_rows, b_rows, threshold, L, spare[j], need_measure=False,
                                                   first=i == 0)
            k, next_check = 0, 1
            while k < max_iter:
                start = time.perf_counter()
                for j, (x_rows, b_rows) in enumerate(inputs):
                    block = states[j]
                    for i in range(k, next_check):
                        # the iteration as solve() runs it (with compile_step: the first eagerly, then compiled)
                        block, _ = solver._step(op, x_rows, b_rows, threshold, L, block, need_measure=False,
                                                first=i == 0)
                    states[j] = block
                elapsed += time.perf_counter() - start
                k = next_check
                code = torch.cat([solver.code(block, threshold, L) for block in states]).numpy()
                iters.append(k)
                secs.append(elapsed)
                codes.append(code)
                next_check = min(max_iter, k + max(1, k // 32))
                sub = evaluate(code)
                if not math.isfinite(sub) or sub <= stop_at or elapsed > max_seconds:
                    break
        return iters, secs, codes


# ----------------------------------------------------------------------------------------------------------------
# scikit-learn and other libraries
# ----------------------------------------------------------------------------------------------------------------
def sklearn_encode(P: np.ndarray, X: np.ndarray, lam: float, algorithm: str, max_iter: int) -> np.ndarray:
    """``sklearn.decomposition.sparse_encode`` (alpha = λ: it rescales by ``n_features`` itself)."""
    from sklearn.decomposition import sparse_encode

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sparse_encode(X, P.T, algorithm=algorithm, alpha=lam, max_iter=max_iter)


def _external_lasso(module: str) -> Callable | None:
    try:
        lib = __import__(module)
    except Exception:  # not installed, or broken: skipped
        return None

    def run(P: np.ndarray, X: np.ndarray, lam: float, tol: float) -> np.ndarray:
        # single-target estimators (objective 1/(2n)||x - Pu||^2 + alpha||u||_1): one fit per signal
        est = lib.Lasso(alpha=lam / P.shape[0], fit_intercept=False, tol=tol)
        out = np.empty((X.shape[0], P.shape[1]), dtype=X.dtype)
        Pf = np.asfortranarray(P)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(X.shape[0]):
                out[i] = est.fit(Pf, X[i]).coef_
        return out

    return run


CD_BUDGETS = [1, 2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 180, 256, 362, 512, 724, 1000, 2000]
TOL_BUDGETS = [10.0 ** (-e / 2) for e in range(2, 25)]  # 1e-1 ... 1e-12, half decades


# ----------------------------------------------------------------------------------------------------------------
# one setting
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Config:
    """Sizes and budgets of a run."""

    batches: tuple[int, ...]
    fractions: tuple[float, ...]
    repeats: int
    max_iter: int
    seconds_per_solver: float  # budget of lasso_cd's curve
    budget_factor: float  # other solvers may take this many times lasso_cd's time to 1e-6
    min_seconds: float  # ... and at least this long
    long_run_seconds: float  # target runs longer than this are timed once
    externals: bool
    externals_max_batch: int  # LARS, celer, skglm only up to this batch (one fit per signal: slow)
    problems: list[Problem]
    externals_seconds: float = 8.0  # celer / skglm curves may take this long (besides the common budget)
    compiled: bool = True  # run the torch.compile'd solvers (COMPILED_SOLVERS)


def _round(v: float) -> float:
    return float(f"{v:.4g}")


def by_budget_time(curve: "Curve") -> float:
    """The time of the run at ``curve.target_budget`` (or of its last run when the target was not reached)."""
    for t, b in zip(curve.times, curve.budgets):
        if b == curve.target_budget:
            return t
    return curve.times[-1]


def _cap_exceeded(spent: float, last: float, growth: float, budget: float) -> bool:
    return spent + last * growth > budget


def run_setting(problem: Problem, frac: float, batch: int, cfg: Config) -> dict:
    """Run every solver on one (problem, λ, batch) and return its record (curves, times, ratios)."""
    P, X = problem.P, problem.X[:batch]
    lam = frac * problem.lam_max
    f_star = np.full(batch, np.inf)
    curves: list[Curve] = []

    def evaluate(code: np.ndarray) -> np.ndarray:
        f = per_sample_objective(P, X, code, lam)
        np.minimum(f_star, f, out=f_star)
        return f

    def sub(f: np.ndarray) -> float:
        return relative_suboptimality(f, f_star)

    # the reference F* (untimed): restarted FISTA to a tight tolerance, polished on its support, then lowered by
    # every code any solver produces below
    with torch.no_grad():
        op = LinearDictionary(weight=torch.tensor(P), learnable=False).bind()
        tight = FISTA(max_iter=2 * cfg.max_iter, tol=1e-10, restart=True)
        code = tight.solve(op, torch.tensor(X), SoftThreshold(lam)).code.numpy()
    evaluate(code)
    evaluate(polish(P, X, code, lam))

    # scikit-learn coordinate descent, budget = max_iter (float64 and float32)
    timed_calls: dict[str, Callable[[], np.ndarray]] = {}
    for dtype in (np.float64, np.float32):
        name = f"sklearn_lasso_cd/{np.dtype(dtype).name}"
        Pd, Xd = P.astype(dtype), X.astype(dtype)
        curve = Curve(name)
        sklearn_encode(Pd, Xd[:1], lam, "lasso_cd", 5)  # warm-up
        spent, hit = 0.0, None
        for i, k in enumerate(CD_BUDGETS):
            secs, code = timed(lambda k=k: sklearn_encode(Pd, Xd, lam, "lasso_cd", k))
            spent += secs
            f = evaluate(code)
            curve.add(secs, f, k)
            best_code = code
            if sub(f) <= TARGET and hit is None:
                hit = i
            if sub(f) <= TARGET / 100 or _cap_exceeded(spent, secs, 1.5, cfg.seconds_per_solver):
                break
        if hit is not None:
            lo, hi = (CD_BUDGETS[hit - 1] if hit else 0), CD_BUDGETS[hit]
            while hi - lo > 1 and not _cap_exceeded(spent, curve.times[-1], 1.0, cfg.seconds_per_solver):
                mid = (lo + hi) // 2
                secs, code = timed(lambda k=mid: sklearn_encode(Pd, Xd, lam, "lasso_cd", k))
                spent += secs
                f = evaluate(code)
                curve.add(secs, f, mid)
                lo, hi = (mid, hi) if sub(f) > TARGET else (lo, mid)
            curve.target_budget = hi
            timed_calls[name] = lambda k=hi, Pd=Pd, Xd=Xd: sklearn_encode(Pd, Xd, lam, "lasso_cd", k)
        else:
            curve.note = "did not reach 1e-6 within the budget"
        curves.append(curve)
        if dtype is np.float64:
            # the reference F*: the best code so far, polished on its support (exact up to rounding)
            evaluate(polish(P, X, best_code, lam))

    # the budget of every other solver: a multiple of lasso_cd's time (what is slower is reported as not reached)
    ref_seconds = by_budget_time(curves[0])
    budget = max(cfg.min_seconds, cfg.budget_factor * ref_seconds)

    # LARS (exact homotopy: a single point) and other Lasso libraries (budget = tol), for small batches
    if cfg.externals and batch <= cfg.externals_max_batch:
        lars = Curve("sklearn_lasso_lars/float64")
        sklearn_encode(P, X[:1], lam, "lasso_lars", 1000)  # warm-up
        secs, code = timed(lambda: sklearn_encode(P, X, lam, "lasso_lars", 1000))
        evaluate(polish(P, X, code, lam))
        lars.add(secs, evaluate(code), 1000)
        lars.target_budget, lars.target_times, lars.target_f = 1000, [secs], lars.f[-1]
        timed_calls[lars.solver] = lambda: sklearn_encode(P, X, lam, "lasso_lars", 1000)
        curves.append(lars)
        for module in ("celer", "skglm"):
            run = _external_lasso(module)
            if run is None:
                continue
            curve = Curve(f"{module}/float64")
            run(P, X[:1], lam, 1e-4)  # warm-up (numba compilation for skglm)
            spent, chosen = 0.0, None
            for tol in TOL_BUDGETS:
                secs, code = timed(lambda tol=tol: run(P, X, lam, tol))
                spent += secs
                f = evaluate(code)
                curve.add(secs, f, tol)
                if sub(f) <= TARGET and chosen is None:
                    chosen = tol
                if sub(f) <= TARGET / 100 or _cap_exceeded(spent, secs, 1.5, max(budget, cfg.externals_seconds)):
                    break
            if chosen is not None:
                curve.target_budget = chosen
                timed_calls[curve.solver] = lambda tol=chosen, run=run: run(P, X, lam, tol)
            else:
                curve.note = "did not reach 1e-6 within the budget"
            curves.append(curve)

    # ours, exact (homotopy): one point each, like LARS, for every batch
    for dtype in (torch.float64, torch.float32):
        for kind in EXACT_SOLVERS:
            solver = OurSolver(kind, dtype, P, X, lam)
            curve = Curve(solver.name)
            solver.solve_exact()  # warm-up
            secs, code = timed(solver.solve_exact)
            curve.add(secs, evaluate(code), 0)
            if sub(curve.f[-1]) <= TARGET and secs <= budget:
                curve.target_budget = 0
                timed_calls[curve.solver] = solver.solve_exact
            else:
                curve.note = f"took {secs:.3g} s (budget {budget:.3g} s), suboptimality {sub(curve.f[-1]):.2g}"
            curves.append(curve)

    # ours: checkpoint pass (curve + iteration count), then solve(max_iter=k) is timed
    for dtype in (torch.float64, torch.float32):
        for kind in OUR_SOLVERS:
            if kind in COMPILED_SOLVERS and not cfg.compiled:
                continue
            solver = OurSolver(kind, dtype, P, X, lam)
            curve = Curve(solver.name)
            solver.solve(2)  # warm-up
            iters, secs, codes = solver.checkpoint_pass(lambda c: sub(evaluate(c)), cfg.max_iter, budget,
                                                        TARGET / 100)
            fs = [evaluate(c) for c in codes]
            for k, s, f in zip(iters, secs, fs):
                curve.add(s, f, k)
            reached = [k for k, f in zip(iters, fs) if sub(f) <= TARGET]
            if reached:
                k = reached[0]
                # confirm on the real call (rounding may differ from the stepped pass): nudge up until it holds
                for _ in range(8):
                    if sub(evaluate(solver.solve(k))) <= TARGET:
                        break
                    k = int(math.ceil(k * 1.05))
                curve.target_budget = k
                timed_calls[curve.solver] = lambda k=k, s=solver: s.solve(k)
            else:
                last = iters[-1] if iters else 0
                curve.note = f"did not reach 1e-6 in {last} iterations ({budget:.3g} s budget)"
            curves.append(curve)

    # ours stopped by tolerance: the largest tol on a half-decade grid that reaches 1e-6, refined by log-bisection
    for dtype in (torch.float64, torch.float32):
        for kind in OUR_SOLVERS_TOL:
            solver = OurSolver(kind, dtype, P, X, lam)
            curve = Curve(f"{kind}_tol/{str(dtype).replace('torch.', '')}")
            solver.solve_to_tolerance(1e-2, cfg.max_iter)  # warm-up
            spent, failed, hit = 0.0, None, None
            for tol in TOL_BUDGETS[2:]:
                secs, code = timed(lambda tol=tol: solver.solve_to_tolerance(tol, cfg.max_iter))
                spent += secs
                f = evaluate(code)
                curve.add(secs, f, tol)
                if sub(f) <= TARGET:
                    hit = tol if hit is None else hit
                elif hit is None:
                    failed = tol
                if sub(f) <= TARGET / 100 or _cap_exceeded(spent, secs, 1.5, budget):
                    break
            if hit is not None:
                for _ in range(3 if failed is not None else 0):
                    mid = math.sqrt(failed * hit)
                    secs, code = timed(lambda tol=mid: solver.solve_to_tolerance(tol, cfg.max_iter))
                    f = evaluate(code)
                    curve.add(secs, f, mid)
                    failed, hit = (mid, hit) if sub(f) > TARGET else (failed, mid)
                curve.target_budget = hit
                timed_calls[curve.solver] = lambda tol=hit, s=solver: s.solve_to_tolerance(tol, cfg.max_iter)
            else:
                curve.note = f"did not reach 1e-6 within the budget ({budget:.3g} s)"
            curves.append(curve)

    # interleaved repeats of every target run
    by_name = {c.solver: c for c in curves}
    for name, call in timed_calls.items():
        call()  # warm-up at the exact budget
    for r in range(cfg.repeats):
        for name, call in timed_calls.items():
            if r and by_name[name].target_times[-1] > cfg.long_run_seconds:
                continue  # a long run is timed once (besides its warm-up)
            secs, code = timed(call)
            by_name[name].target_times.append(secs)
            by_name[name].target_f = evaluate(code)

    # final F* (the minimum over everything seen) and the record
    ref = by_name[REFERENCE]
    ref_time = statistics.median(ref.target_times) if ref.target_times else math.nan
    record = {"problem": problem.name, "lambda_fraction": frac, "lambda": lam, "batch": batch,
              "n_features": int(P.shape[0]), "n_atoms": int(P.shape[1]), "F_star_sum": float(f_star.sum()),
              "solvers": {}}
    for c in curves:
        t = statistics.median(c.target_times) if c.target_times else math.nan
        reached = c.target_f is not None and sub(c.target_f) <= TARGET * 1.0001
        record["solvers"][c.solver] = {
            "curve_seconds": [_round(t) for t in c.times],
            "curve_suboptimality": [_round(sub(f)) for f in c.f],
            "curve_budget": c.budgets,
            "target_budget": c.target_budget,
            "target_seconds": t if reached else None,
            "target_seconds_all": c.target_times,
            "target_suboptimality": sub(c.target_f) if c.target_f is not None else None,
            "ratio_to_lasso_cd": t / ref_time if reached and math.isfinite(ref_time) else None,
            "note": c.note if not reached else "",
        }
    return record


# ----------------------------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------------------------
def _atomic_write(path: str, write: Callable[[str], None]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _cell(entry: dict) -> str:
    if entry["ratio_to_lasso_cd"] is None:
        return "—"
    return f"{entry['ratio_to_lasso_cd']:.2f}"


def markdown_table(results: dict) -> str:
    """Time to 1e-6 as a ratio to ``lasso_cd`` (float64); ``—``: not reached within the budget."""
    settings = results["settings"]
    names: list[str] = []
    for s in settings:
        for name in s["solvers"]:
            if name not in names:
                names.append(name)
    ours = [n for n in names if not n.startswith(("sklearn", "celer", "skglm"))]
    others = [n for n in names if n not in ours]
    cols = others + ours
    head = "| problem | λ/λmax | batch | lasso_cd f64 (s) | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (4 + len(cols))]
    for s in settings:
        ref = s["solvers"][REFERENCE]["target_seconds"]
        ref_txt = f"{ref:.3g}" if ref is not None else "—"
        cells = [_cell(s["solvers"][n]) if n in s["solvers"] else "" for n in cols]
        lines.append(f"| {s['problem']} | {s['lambda_fraction']:g} | {s['batch']} | {ref_txt} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)


#: the runs of ours the target is about ("batched FISTA, or a better method of ours": FISTA, SpaRSA, ADMM,
#: homotopy, coordinate descent)
TARGET_SOLVERS = ("fista", "fista_restart", "fista_restart_tol", "sparsa", "sparsa_tol", "admm", "admm_tol",
                  "sparsa_polish_tol", "admm_polish_tol", "sparsa_compiled", "fista_restart_compiled", "homotopy",
                  "cd_tol")


def target_summary(results: dict) -> list[str]:
    """For batches >= 256: is our best run among :data:`TARGET_SOLVERS` at most 1× (float64) and 1/3×
    (float32) the time of ``lasso_cd``?"""
    lines = []
    for s in results["settings"]:
        if s["batch"] < 256:
            continue
        for dtype, goal in (("float64", 1.0), ("float32", 1 / 3)):
            ratios = [(s["solvers"].get(f"{k}/{dtype}", {}).get("ratio_to_lasso_cd"), k) for k in TARGET_SOLVERS]
            best, winner = min(((r, k) for r, k in ratios if r is not None), default=(None, None))
            ok = best is not None and best <= goal
            lines.append(f"{s['problem']} λ={s['lambda_fraction']:g}·λmax batch={s['batch']} {dtype}: "
                         f"best ratio {best if best is None else round(best, 3)} ({winner}; goal ≤ {goal:.3g}) "
                         f"{'met' if ok else 'NOT met'}")
    return lines


def write_markdown(results: dict, path: str) -> None:
    """Write the ratio table, the run's settings and the target check as Markdown (atomically)."""
    meta = results["meta"]
    text = [
        "# Lasso solvers: time to 1e-6 relative suboptimality, as a ratio to scikit-learn `lasso_cd` (float64)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['cpu']} ({meta['cores']} cores), {meta['threads']} thread(s) for torch/BLAS/numba, "
        f"torch {meta['torch']}, scikit-learn {meta['sklearn']}, {meta['repeats']} repeat(s) (median).  ",
        f"Suboptimality: (ΣF − ΣF*)/ΣF* over the batch, evaluated in float64. Ratio < 1: faster than `lasso_cd`; "
        f"— : not reached within the budget ({meta['max_iter']} iterations / {meta['seconds_per_solver']} s).",
        "",
        markdown_table(results),
        "",
        "## Target (batch ≥ 256): our best of FISTA, SpaRSA, ADMM, homotopy and coordinate descent ≤ 1× `lasso_cd` "
        "in float64, "
        "≤ 1/3× in float32",
        "",
        *[f"- {line}" for line in target_summary(results)],
        "",
    ]
    _atomic_write(path, lambda tmp: open(tmp, "w").write("\n".join(text)))


def write_plot(results: dict, path: str) -> None:
    """Suboptimality versus seconds (log-log), one panel per setting, float32 dashed, 1e-6 dotted (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = results["settings"]
    cols = len(results["meta"]["batches"])
    rows = math.ceil(len(settings) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    names = sorted({n for s in settings for n in s["solvers"]})
    colors = {n.split("/")[0]: plt.cm.tab10(i % 10) for i, n in enumerate(sorted({n.split("/")[0] for n in names}))}
    for ax, s in zip(axes.flat, settings):
        for name, e in s["solvers"].items():
            pts = [(t, max(v, 1e-17)) for t, v in zip(e["curve_seconds"], e["curve_suboptimality"]) if t > 0]
            if not pts:
                continue
            pts.sort()
            t, v = zip(*pts)
            style = "--" if name.endswith("float32") else "-"
            marker = "o" if len(pts) == 1 else None
            ax.loglog(t, v, style, marker=marker, color=colors[name.split("/")[0]], label=name, lw=1.2)
        ax.axhline(TARGET, color="k", lw=0.6, ls=":")
        ax.set_title(f"{s['problem']}, λ={s['lambda_fraction']:g}·λmax, B={s['batch']}", fontsize=9)
        ax.set_xlabel("seconds")
        ax.set_ylabel("(F − F*)/F*")
        ax.set_ylim(1e-16, 10)
    for ax in list(axes.flat)[len(settings):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=6, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / (3.6 * rows)))
    _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_benchmark(cfg: Config, out_dir: str, threads: int, command: str) -> dict:
    """Run every setting, write ``solvers.json``/``.md``/``.png`` into ``out_dir`` and return the results."""
    import sklearn
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    results = {"meta": {"command": command, "cpu": _cpu_model(), "cores": os.cpu_count(), "threads": threads,
                        "torch": torch.__version__, "sklearn": sklearn.__version__, "python": platform.python_version(),
                        "repeats": cfg.repeats, "max_iter": cfg.max_iter, "seconds_per_solver": cfg.seconds_per_solver,
                        "batches": list(cfg.batches), "fractions": list(cfg.fractions), "target": TARGET,
                        "reference": REFERENCE, "compiled": cfg.compiled},
               "settings": []}
    jobs = [(p, f, b) for p in cfg.problems for f in cfg.fractions for b in cfg.batches]
    with threadpool_limits(limits=threads):
        for problem, frac, batch in tqdm(jobs, desc="settings", file=sys.stderr):
            results["settings"].append(run_setting(problem, frac, batch, cfg))
            _atomic_write(os.path.join(out_dir, "solvers.json"),
                          lambda tmp: json.dump(results, open(tmp, "w"), indent=1))
    write_markdown(results, os.path.join(out_dir, "solvers.md"))
    write_plot(results, os.path.join(out_dir, "solvers.png"))
    return results


def build_config(quick: bool, repeats: int | None, seed: int) -> Config:
    """The full benchmark, or tiny sizes for ``--quick``."""
    if quick:
        problems = [simulated_problem(0.6, 12, 24, 32, seed + 1), patch_problem(32, 32, 300, seed, dict_iters=1)]
        return Config(batches=(1, 16), fractions=(0.5, 0.1), repeats=repeats or 1, max_iter=400,
                      seconds_per_solver=0.5, budget_factor=20.0, min_seconds=0.05, long_run_seconds=1.0,
                      externals=False, externals_max_batch=16, problems=problems)
    problems = [simulated_problem(0.0, 100, 200, 4096, seed), simulated_problem(0.6, 100, 200, 4096, seed + 1),
                patch_problem(128, 4096, 10_000, seed)]
    return Config(batches=(1, 256, 4096), fractions=(0.5, 0.1, 0.05), repeats=repeats or 3, max_iter=3000,
                  seconds_per_solver=30.0, budget_factor=3.0, min_seconds=0.2, long_run_seconds=2.0,
                  externals=True, externals_max_batch=256, problems=problems)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (no external libraries)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--threads", type=int, default=1, help="threads for torch, BLAS and numba (all the same)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per target run (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batches", type=int, nargs="+", help="override the batch sizes")
    parser.add_argument("--fractions", type=float, nargs="+", help="override the λ/λmax fractions")
    parser.add_argument("--problems", nargs="+", help="run only these problems (by name)")
    parser.add_argument("--no-compile", action="store_true",
                        help="leave out the solvers run with compile_step=True (torch.compile needs a C++ compiler)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {args.threads}")
    if args.repeats is not None and args.repeats < 1:
        raise ValueError(f"--repeats must be a positive integer, got {args.repeats}")
    cfg = build_config(args.quick, args.repeats, args.seed)
    cfg.compiled = not args.no_compile
    if args.batches:
        cfg.batches = tuple(args.batches)
    if args.fractions:
        cfg.fractions = tuple(args.fractions)
    if args.problems:
        known = [p.name for p in cfg.problems]
        unknown = sorted(set(args.problems) - set(known))
        if unknown:
            raise ValueError(f"--problems must be among {known}, got {unknown}")
        cfg.problems = [p for p in cfg.problems if p.name in args.problems]
    command = "python benchmarks/solvers.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = run_benchmark(cfg, args.out, args.threads, command.strip())
    print(markdown_table(results))
    for line in target_summary(results):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
