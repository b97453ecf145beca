"""Human and machine outputs of a result store: JSON, a Markdown table, and PNG charts (Agg backend).

* :func:`markdown_table` — one row per model, one column per benchmark's headline metric
  (arrows say whether higher or lower is better).
* :func:`plot_robustness_bars` — one bar group (panel) per benchmark, one bar per model.
* :func:`plot_corruption_severity` — ImageNet-C top-1 per corruption × severity, one heat-map per model.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .result_store import atomic_write_text

__all__ = [
    "HEADLINE_METRICS",
    "headline_value",
    "markdown_table",
    "write_json",
    "plot_robustness_bars",
    "plot_corruption_severity",
]

HEADLINE_METRICS: dict[str, tuple[str, str, str]] = {
    "clean": ("top1", "Clean top-1 ↑", "higher"),
    "imagenet_c": ("mce", "IN-C mCE ↓", "lower"),
    "imagenet_r": ("top1", "IN-R top-1 ↑", "higher"),
    "imagenet_sketch": ("top1", "IN-SK top-1 ↑", "higher"),
    "pgd": ("top1", "PGD top-1 ↑", "higher"),
    "fgsm": ("top1", "FGSM top-1 ↑", "higher"),
    "imagenet_a": ("top1", "IN-A top-1 ↑", "higher"),
    "pacs": ("mean", "PACS mean top-1 ↑", "higher"),
    "voc_segmentation": ("miou", "VOC mIoU ↑", "higher"),
    "mit1003_nss": ("nss", "MIT1003 NSS ↑", "higher"),
}
"""Benchmark → (summary key, column title, better direction)."""


def headline_value(benchmark: str, summary: Mapping[str, Any]) -> float | None:
    """The benchmark's headline number from its summary (:data:`HEADLINE_METRICS`).

    Args:
        benchmark: Benchmark name.
        summary: Its summary dict.

    Returns:
        The number, or None when absent.
    """
    key = HEADLINE_METRICS.get(benchmark, ("top1", benchmark, "higher"))[0]
    value = summary.get(key)
    return None if value is None else float(value)


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented, key-sorted JSON, atomically.

    Args:
        path: Destination file.
        data: JSON-serialisable mapping.
    """
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _ordered_benchmarks(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    present = {b for row in summaries.values() for b in row}
    return [b for b in HEADLINE_METRICS if b in present] + sorted(present - set(HEADLINE_METRICS))


def markdown_table(summaries: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """A Markdown table: rows = models, columns = headline metrics (2 decimals; NSS 3).

    Args:
        summaries: ``{model label: {benchmark: summary}}`` (:meth:`ResultStore.summaries`).

    Returns:
        The table text (a note line when there is nothing to show).
    """
    benchmarks = _ordered_benchmarks(summaries)
    if not benchmarks:
        return "_no finished benchmark yet_\n"
    titles = [HEADLINE_METRICS.get(b, ("", b, ""))[1] for b in benchmarks]
    lines = ["| model | " + " | ".join(titles) + " |", "|---|" + "---|" * len(benchmarks)]
    for model, row in summaries.items():
        cells = []
        for benchmark in benchmarks:
            value = headline_value(benchmark, row[benchmark]) if benchmark in row else None
            digits = 3 if benchmark == "mit1003_nss" else 2
            cells.append("–" if value is None else f"{value:.{digits}f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save_png(figure: Any, path: str | Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(buffer.getvalue())
    temp.replace(path)


def plot_robustness_bars(summaries: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | Path) -> None:
    """Bar chart: one panel per benchmark (its headline metric), one coloured bar per model.

    Args:
        summaries: ``{model label: {benchmark: summary}}``.
        path: The PNG file to write.
    """
    benchmarks = _ordered_benchmarks(summaries)
    if not benchmarks:
        raise ValueError("summaries holds no finished benchmark to plot")
    plt = _pyplot()
    models = list(summaries)
    columns = min(5, len(benchmarks))
    rows = math.ceil(len(benchmarks) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")
    for slot, axis in enumerate(axes.flat):
        if slot >= len(benchmarks):
            axis.set_visible(False)
            continue
        benchmark = benchmarks[slot]
        values = [
            headline_value(benchmark, summaries[m][benchmark]) if benchmark in summaries[m] else None for m in models
        ]
        heights = [0.0 if v is None else v for v in values]
        bars = axis.bar(range(len(models)), heights, color=[colours(i % 10) for i in range(len(models))])
        for bar, value in zip(bars, values):
            if value is not None:
                anchor = (bar.get_x() + bar.get_width() / 2, bar.get_height())
                axis.annotate(f"{value:.3g}", anchor, ha="center", va="bottom", fontsize=7)
        axis.set_title(HEADLINE_METRICS.get(benchmark, ("", benchmark, ""))[1], fontsize=9)
        axis.set_xticks([])
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours(i % 10)) for i in range(len(models))]
    figure.legend(handles, models, loc="lower center", ncol=min(4, len(models)), fontsize=8)
    figure.subplots_adjust(bottom=0.12 + 0.04 * math.ceil(len(models) / 4))
    _save_png(figure, path)
    plt.close(figure)


def plot_corruption_severity(entries: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | Path) -> None:
    """Heat-maps of ImageNet-C top-1 (%) with corruptions as rows and severities as columns, one per model.

    Args:
        entries: ``{model label: {"<corruption>/<severity>": metrics with "top1"}}``
            (:meth:`ResultStore.entries` of ``"imagenet_c"``).
        path: The PNG file to write.
    """
    if not entries:
        raise ValueError("entries holds no ImageNet-C result to plot")
    plt = _pyplot()
    most = max(len({name.rsplit("/", 1)[0] for name in by_entry}) for by_entry in entries.values())
    figure, axes = plt.subplots(1, len(entries), figsize=(4.2 * len(entries), 0.3 * most + 1.6), squeeze=False)
    for axis, (model, by_entry) in zip(axes.flat, entries.items()):
        corruptions: list[str] = []
        for name in by_entry:
            corruption = name.rsplit("/", 1)[0]
            if corruption not in corruptions:
                corruptions.append(corruption)
        grid = [[float("nan")] * 5 for _ in corruptions]
        for name, metrics in by_entry.items():
            corruption, severity = name.rsplit("/", 1)
            grid[corruptions.index(corruption)][int(severity) - 1] = float(metrics["top1"])
        image = axis.imshow(grid, vmin=0.0, vmax=100.0, cmap="viridis", aspect="auto")
        for r, row in enumerate(grid):
            for c, value in enumerate(row):
                if not math.isnan(value):
                    colour = "white" if value < 60 else "black"
                    axis.text(c, r, f"{value:.0f}", ha="center", va="center", fontsize=7, color=colour)
        axis.set_xticks(range(5), [str(s) for s in range(1, 6)])
        axis.set_yticks(range(len(corruptions)), corruptions, fontsize=7)
        axis.set_xlabel("severity")
        axis.set_title(model, fontsize=9)
        figure.colorbar(image, ax=axis, label="top-1 (%)")
    _save_png(figure, path)
    plt.close(figure)
