"""Smoke tests of the benchmark scripts: they run end to end on tiny sizes and write outputs that parse."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_solvers_quick(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "solvers.py"), "--quick", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "solvers.json").read_text())
    meta, settings = results["meta"], results["settings"]
    assert meta["threads"] == 1 and meta["reference"] == "sklearn_lasso_cd/float64" and meta["compiled"]
    assert len(settings) == len(meta["batches"]) * len(meta["fractions"]) * 2  # two problems in --quick
    for setting in settings:
        ref = setting["solvers"]["sklearn_lasso_cd/float64"]
        assert ref["ratio_to_lasso_cd"] == 1.0
        for name in ("fista/float64", "fista_restart/float32", "ista/float64", "lca/float32", "sparsa_compiled/float32"):
            entry = setting["solvers"][name]
            assert len(entry["curve_seconds"]) == len(entry["curve_suboptimality"]) >= 1
            assert all(v >= 0 for v in entry["curve_suboptimality"])
            if entry["target_seconds"] is not None:
                assert entry["target_suboptimality"] <= 1e-6 * 1.0001
    table = (tmp_path / "solvers.md").read_text()
    assert "| problem | λ/λmax | batch |" in table and "fista_restart/float64" in table
    png = (tmp_path / "solvers.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_layers_quick(tmp_path):
    keep_heap = platform.libc_ver()[0] == "glibc"  # --keep-heap needs glibc's mallopt
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "layers.py"), "--quick", "--out", str(tmp_path),
                           *(["--keep-heap"] if keep_heap else [])],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "layers.json").read_text())
    meta, mixers, models = results["meta"], results["mixers"], results["models"]
    assert meta["threads"] == 1 and meta["reference"] == "timm_attention" and meta["quick"]
    assert meta["allocator"].startswith("glibc, heap kept") if keep_heap else meta["allocator"] == "default"
    names = {row["mixer"] for row in mixers}
    assert {"timm_attention", "self", "perf", "vars_d/original", "vars_d/paper", "vars_sd/original",
            "vars_sd/paper", "vars_s/original", "vars_s/paper"} <= names
    assert len(mixers) == len(names) * len(meta["tokens"])
    for row in mixers:
        assert row["median_ms"] > 0 and row["time_ratio"] > 0 and row["memory_bytes"] > 0
        assert len(row["times_ms"]) == row["reps"] == meta["reps"]
        if row["mixer"] == "timm_attention":
            assert row["time_ratio"] == 1.0 and row["memory_ratio"] == 1.0
    assert {(r["family"], r["attention"]) for r in models} == {
        (f, a) for f in ("deit", "rvt") for a in ("self", "perf", "vars_s", "vars_d", "vars_sd")}
    assert all(r["images_per_s"] > 0 for r in models)
    table = (tmp_path / "layers.md").read_text()
    assert "| vars_sd/original |" in table and "images/s" in table
    assert (tmp_path / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_polish_quick(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "polish.py"), "--quick", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "polish.json").read_text())
    assert results["meta"]["quick"] and results["meta"]["polish_every"] == 5
    assert {r["solver"] for r in results["rows"]} == {"sparsa", "admm"}
    for row in results["rows"]:
        assert row["plain"]["median_s"] > 0 and row["polished"]["median_s"] > 0
        assert row["plain"]["n_iter"] >= 1 and row["polished"]["n_iter"] >= 1
        assert row["polished"]["max_rel_kkt"] >= 0 and row["plain"]["max_rel_kkt"] >= 0
        assert abs(row["objective_gap"]) < 1e-4  # the two runs solve the same problem
    assert "| problem | λ/λmax | batch |" in (tmp_path / "polish.md").read_text()


def test_batched_solve_quick(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "batched_solve.py"), "--quick", "--out",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "batched_solve.json").read_text())
    meta, settings = results["meta"], results["settings"]
    assert meta["device"] == "cpu" and meta["batch"] == 64 and not meta["tf32"]
    assert len(settings) == 4  # two problems × two λ fractions in --quick
    for setting in settings:
        # the reference is the per-sample minimum of ours and lasso_cd's: both are scored against it
        assert setting["reference_suboptimality"] >= 0 and setting["lasso_cd"]["suboptimality"] >= 0
        assert min(setting["reference_suboptimality"], setting["lasso_cd"]["suboptimality"]) < 1e-9
        for record in setting["solvers"].values():
            if record["seconds"] is not None:
                assert record["suboptimality"] <= 1e-6 and record["seconds"] > 0 and record["iterations"] >= 1
                assert record["tried"][-1][0] == record["tol"]  # the timed tolerance is the first that sufficed
    assert "| problem | λ/λmax |" in (tmp_path / "batched_solve.md").read_text()
    assert (tmp_path / "batched_solve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
