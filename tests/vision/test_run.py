"""The main command, ``python -m integrations.vision.run``, on the built-in demo at its quick scale."""
from __future__ import annotations

import json

import pytest

from integrations.vision.run import DEMO_BENCHMARKS, main


def _run(tmp_path, *extra):
    argv = ["--demo-scale", "quick", "--epochs", "1", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--no-progress", *extra]
    return main(argv)


def test_unknown_model_lists_the_valid_names(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"unknown model\(s\) deit_magic; valid names: .*deit_vars_sd"):
        _run(tmp_path, "--model", "deit_magic")


def test_unknown_benchmark_lists_the_choices(tmp_path):
    with pytest.raises(SystemExit, match="unknown or unavailable benchmark"):
        _run(tmp_path, "--model", "deit_perf", "--benchmarks", "clean,imagenet_a")


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    assert _run(tmp_path, "--model", "deit_perf", "--benchmarks", "clean,fgsm,voc_segmentation,mit1003_nss") == 0
    out = tmp_path / "out"
    printed = capsys.readouterr().out
    assert "DEMO DATA" in printed and "| deit_perf" in printed
    for name in ("results.json", "results.md", "robustness.png", "attention_maps.png", "training_curve_deit_perf.png"):
        assert (out / name).stat().st_size > 0, name
    first = json.loads((out / "results.json").read_text())
    # a second run reuses the cached model and skips every finished entry: the store is unchanged
    assert _run(tmp_path, "--model", "deit_perf", "--benchmarks", "clean,fgsm,voc_segmentation,mit1003_nss") == 0
    assert json.loads((out / "results.json").read_text()) == first


@pytest.mark.slow
def test_full_quick_suite_with_vars_sd(tmp_path):
    assert _run(tmp_path, "--model", "deit_vars_sd") == 0
    table = (tmp_path / "out" / "results.md").read_text()
    assert "deit_vars_sd" in table and "resnet10t (reference)" in table
    assert len(DEMO_BENCHMARKS) == 9
