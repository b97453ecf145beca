r"""Support polish (``polish_every``): time to a KKT tolerance with and without it, in one process.

For the problems of ``solvers.py`` (two Gaussian designs, image patches) at :math:`\lambda \in \{0.5, 0.1\}
\cdot\lambda_{\max}` and batches of 256 and 4096 signals, ``SpaRSA`` and ``ADMM`` solve to a per-sample tolerance on
their optimality measure (``--tol64`` in float64, ``--tol32`` in float32, both relative to
:math:`\|P^\top x\|_\infty`) plainly and with ``polish_every=5``. Reported: the median time of each (interleaved
repeats after a warm-up, bind and step size included, as a user calls it), the ratio polished / plain, the iterations
of the last sample to finish, the largest KKT residual of the result (relative) and its objective gap to the plain
solve. ``solvers.py`` asks a different question — the time to a relative suboptimality of 1e-6, where each solver
stops at the loosest tolerance that gives it — and there the polish does not pay (see ``benchmarks/README.md``).

Run ``python benchmarks/polish.py`` (a few minutes on one core) or ``--quick`` (seconds). Writes ``polish.json`` and
``polish.md`` into ``--out`` (default ``benchmarks/results``).
"""
from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from solvers import _atomic_write, _cpu_model, patch_problem, simulated_problem  # noqa: E402

from sparsecode import ADMM, LinearDictionary, SoftThreshold, SpaRSA, kkt_residual, objective  # noqa: E402

__all__ = ["compare", "markdown_report", "main"]

SOLVERS = {"sparsa": SpaRSA, "admm": ADMM}
POLISH_EVERY = 5


def compare(P: torch.Tensor, X: torch.Tensor, lam: float, kind: str, tol: float, reps: int,
            max_iter: int = 3000) -> dict:
    """Time ``kind`` to ``tol`` on ``(P, X, λ)`` plainly and with the polish; the record of the two runs."""
    threshold = SoftThreshold(lam)

    def run(polish_every: int | None):
        with torch.no_grad():
            op = LinearDictionary(weight=P, learnable=False).bind()
            return SOLVERS[kind](max_iter=max_iter, tol=tol, polish_every=polish_every).solve(op, X, threshold)

    calls = {"plain": lambda: run(None), "polished": lambda: run(POLISH_EVERY)}
    results = {name: call() for name, call in calls.items()}  # warm-up (and the codes)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(reps):
        for name in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    with torch.no_grad():
        op64 = LinearDictionary(weight=P.double(), learnable=False).bind()
        X64, scale = X.double(), (X.double() @ P.double()).abs().amax(dim=1).clamp_min(1e-300)
        record = {}
        for name, res in results.items():
            code = res.code.double()
            record[name] = {"median_s": statistics.median(times[name]), "times_s": times[name],
                            "n_iter": int(res.n_iter),
                            "mean_iter": float(res.n_iter_per_sample.double().mean()),
                            "max_rel_kkt": float((kkt_residual(op64, X64, code, threshold) / scale).max()),
                            "objective": float(objective(op64, X64, code, threshold).sum())}
    plain = record["plain"]
    record["ratio"] = record["polished"]["median_s"] / plain["median_s"]
    record["objective_gap"] = (record["polished"]["objective"] - plain["objective"]) / abs(plain["objective"])
    return record


def markdown_report(results: dict) -> str:
    """The Markdown table of a results dictionary (as written to ``polish.json``)."""
    meta = results["meta"]
    lines = [f"Machine: {meta['cpu']}, 1 thread, torch {meta['torch']}; median of {meta['reps']} interleaved "
             f"repetitions after a warm-up; tolerance {meta['tol64']:g} (float64) and {meta['tol32']:g} (float32) "
             f"on each solver's own measure; polish every {meta['polish_every']} iterations.", "",
             "| problem | λ/λmax | batch | dtype | solver | plain ms | polished ms | ratio | iterations (last / mean) "
             "| max KKT / ‖Pᵀx‖∞ (plain → polished) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        p, q = r["plain"], r["polished"]
        lines.append(f"| {r['problem']} | {r['fraction']:g} | {r['batch']} | {r['dtype']} | {r['solver']} | "
                     f"{p['median_s'] * 1e3:.1f} | {q['median_s'] * 1e3:.1f} | {r['ratio']:.2f}× | "
                     f"{p['n_iter']} → {q['n_iter']} / {p['mean_iter']:.1f} → {q['mean_iter']:.1f} | "
                     f"{p['max_rel_kkt']:.1e} → {q['max_rel_kkt']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point (see ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tol64", type=float, default=1e-8)
    parser.add_argument("--tol32", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.reps < 1:
        raise ValueError(f"--reps must be a positive integer, got {args.reps}")
    if not (args.tol64 > 0 and args.tol32 > 0):
        raise ValueError(f"--tol64 and --tol32 must be positive, got {args.tol64}, {args.tol32}")
    torch.set_num_threads(1)
    if args.quick:
        problems = [simulated_problem(0.6, 12, 24, 64, args.seed + 1), patch_problem(32, 64, 300, args.seed, 1)]
        batches, fractions, args.reps = (16, 64), (0.5,), 1
    else:
        problems = [simulated_problem(0.0, 100, 200, 4096, args.seed),
                    simulated_problem(0.6, 100, 200, 4096, args.seed + 1), patch_problem(128, 4096, 10_000, args.seed)]
        batches, fractions = (256, 4096), (0.5, 0.1)
    settings = [(p, f, b, dt, k) for p in problems for f in fractions for b in batches
                for dt in (torch.float64, torch.float32) for k in SOLVERS]
    rows = []
    for problem, frac, batch, dtype, kind in tqdm(settings, desc="polish"):
        P = torch.tensor(problem.P, dtype=dtype)
        X = torch.tensor(problem.X[:batch], dtype=dtype)
        tol = args.tol64 if dtype == torch.float64 else args.tol32
        record = compare(P, X, frac * problem.lam_max, kind, tol, args.reps)
        rows.append({"problem": problem.name, "fraction": frac, "batch": batch,
                     "dtype": str(dtype).replace("torch.", ""), "solver": kind, **record})
    meta = {"cpu": _cpu_model(), "torch": torch.__version__, "python": platform.python_version(), "reps": args.reps,
            "tol64": args.tol64, "tol32": args.tol32, "polish_every": POLISH_EVERY, "quick": bool(args.quick),
            "command": " ".join(["python", "benchmarks/polish.py", *(argv if argv is not None else sys.argv[1:])])}
    results = {"meta": meta, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    _atomic_write(str(args.out / "polish.json"), lambda tmp: json.dump(results, open(tmp, "w"), indent=1))
    report = markdown_report(results)
    _atomic_write(str(args.out / "polish.md"), lambda tmp: open(tmp, "w").write(report))
    print(report)
    return results


if __name__ == "__main__":
    main()
