"""Benchmark name → runner table; adding a benchmark is one function and one entry here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .attention_runners import run_mit1003_nss, run_voc_segmentation
from .benchmark_context import BenchmarkContext
from .classification_runners import (
    run_clean,
    run_fgsm,
    run_imagenet_a,
    run_imagenet_c,
    run_imagenet_r,
    run_imagenet_sketch,
    run_pacs,
    run_pgd,
)

__all__ = ["Runner", "BENCHMARKS", "get_runner"]

Runner = Callable[[BenchmarkContext], dict[str, Any]]
"""``runner(context) -> JSON-serialisable summary``."""

BENCHMARKS: dict[str, Runner] = {
    "clean": run_clean,
    "imagenet_c": run_imagenet_c,
    "imagenet_r": run_imagenet_r,
    "imagenet_a": run_imagenet_a,
    "imagenet_sketch": run_imagenet_sketch,
    "pgd": run_pgd,
    "fgsm": run_fgsm,
    "pacs": run_pacs,
    "voc_segmentation": run_voc_segmentation,
    "mit1003_nss": run_mit1003_nss,
}
"""Every benchmark runner by name."""


def get_runner(name: str) -> Runner:
    """The runner registered as ``name``.

    Args:
        name: A key of :data:`BENCHMARKS`.

    Returns:
        The runner.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]
