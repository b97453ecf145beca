"""Run a list of benchmarks for one model against a data root, resumably, and write the reports.

Outputs in ``out_dir``: ``results.json`` (the :class:`ResultStore`, updated after every entry),
``results.md`` (Markdown table of every model in the store), ``robustness.png`` (bar chart) and,
after ImageNet-C, ``imagenet_c.png`` (corruption × severity chart). Only rank 0 writes when
``torch.distributed`` is initialised; every rank computes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .benchmark_context import AttentionFn, BenchmarkContext, FinetuneFn
from .data_root import DataRoot
from .imagenet_facts import IMAGENET_MEAN, IMAGENET_STD, imagenet_wnids
from .loading import distributed_context
from .registry import BENCHMARKS, get_runner
from .classification_runners import run_imagenet_c
from .report_writers import markdown_table, plot_corruption_severity, plot_robustness_bars
from .result_store import EntryRecorder, ResultStore, atomic_write_text

__all__ = ["RESULTS_FILE", "run_suite", "write_reports"]

RESULTS_FILE = "results.json"


def write_reports(store: ResultStore, out_dir: str | Path, *, plots: bool = True) -> None:
    """Write ``results.md`` and (optionally) the PNG charts from the store's finished results.

    Args:
        store: The result store.
        out_dir: Output folder.
        plots: Also draw ``robustness.png`` / ``imagenet_c.png``.
    """
    out_dir = Path(out_dir)
    summaries = store.summaries()
    atomic_write_text(out_dir / "results.md", "# Robustness results\n\n" + markdown_table(summaries))
    if plots and summaries:
        plot_robustness_bars(summaries, out_dir / "robustness.png")
        corruption_entries = store.entries("imagenet_c")
        if corruption_entries:
            plot_corruption_severity(corruption_entries, out_dir / "imagenet_c.png")


def run_suite(
    model: nn.Module,
    *,
    model_name: str,
    checkpoint_digest: str,
    data_root: str | Path | DataRoot,
    benchmarks: Sequence[str],
    out_dir: str | Path,
    class_names: Sequence[str] | None = None,
    image_size: int | None = 224,
    resize: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    attention_fn: AttentionFn | None = None,
    finetune_fn: FinetuneFn | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    num_workers: int = 0,
    max_images: int | None = None,
    seed: int = 0,
    progress: bool = True,
    imagenet_c_reference: Mapping[str, float] | None = None,
    reference_clean_error: float | None = None,
    plots: bool = True,
) -> dict[str, dict[str, Any]]:
    """Run ``benchmarks`` in order for one (model, checkpoint), storing every finished entry in ``out_dir``.

    A rerun with the same ``out_dir`` resumes: finished entries are read back, not recomputed.

    Args:
        model: Any classifier of normalised images; its logits index ``class_names``.
        model_name: Name used in the store and the reports.
        checkpoint_digest: :func:`checkpoint_digest` of the weights (part of the store key).
        data_root: The data root (standard folder names) or a :class:`DataRoot` with explicit paths.
        benchmarks: Names from :data:`BENCHMARKS`, run in this order.
        out_dir: Run directory for ``results.json`` and the reports.
        class_names: The label space in logit order; None = the 1000 sorted ImageNet wnids.
        image_size: Model input side; None keeps images as they are.
        resize: Resize short side to ``image_size · 256/224`` first (False for small demo images).
        mean: Normalisation mean.
        std: Normalisation standard deviation.
        attention_fn: ``(B, 3, H, W) in [0, 1] -> (B, h, w)`` maps, for VOC / MIT1003.
        finetune_fn: ``(model, train_datasets) -> model``, for PACS.
        device: Where the model runs.
        batch_size: Samples per batch.
        num_workers: DataLoader workers.
        max_images: Cap on images per entry (seeded subset), None for all.
        seed: Seed of subsets and PGD starts.
        progress: Show tqdm bars.
        imagenet_c_reference: corruption → reference model's ``E_c`` (fraction) for mCE; None = AlexNet.
        reference_clean_error: The reference's clean error (fraction); enables relative mCE.
        plots: Draw the PNG charts.

    Returns:
        ``{benchmark: summary}`` for the benchmarks run.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"model_name must be a non-empty string, got {model_name!r}")
    if not isinstance(checkpoint_digest, str) or not checkpoint_digest:
        raise ValueError(f"checkpoint_digest must be a non-empty string, got {checkpoint_digest!r}")
    if isinstance(benchmarks, str):
        raise TypeError(f"benchmarks must be a sequence of names, got the string {benchmarks!r}")
    unknown = [b for b in benchmarks if b not in BENCHMARKS]
    if unknown or not benchmarks:
        raise ValueError(f"benchmarks must be a non-empty list from {sorted(BENCHMARKS)}, got {list(benchmarks)}")
    names = tuple(imagenet_wnids() if class_names is None else class_names)
    root = data_root if isinstance(data_root, DataRoot) else DataRoot(data_root)
    out_dir = Path(out_dir)
    rank, world_size = distributed_context()
    store = ResultStore(out_dir / RESULTS_FILE, writable=rank == 0)
    if world_size > 1:
        # Every rank must skip exactly the entries rank 0 skips, or the all-reduces would mismatch.
        shared = [store.data]
        dist.broadcast_object_list(shared, src=0)
        store.data = shared[0]
    config_base = {
        "classes": len(names),
        "image_size": image_size,
        "resize": resize,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "max_images": max_images,
        "seed": seed,
    }
    results: dict[str, dict[str, Any]] = {}
    for benchmark in benchmarks:
        store.begin(model_name, checkpoint_digest, benchmark, config_base)
        recorder = EntryRecorder(store, model_name, checkpoint_digest, benchmark)
        context = BenchmarkContext(
            model=model,
            data_root=root,
            recorder=recorder,
            class_names=names,
            image_size=image_size,
            resize=resize,
            mean=tuple(mean),
            std=tuple(std),
            device=device,
            batch_size=batch_size,
            num_workers=num_workers,
            max_images=max_images,
            seed=seed,
            progress=progress,
            attention_fn=attention_fn,
            finetune_fn=finetune_fn,
            previous=dict(results),
        )
        if benchmark == "imagenet_c":
            summary = run_imagenet_c(
                context,
                reference_errors=None if imagenet_c_reference is None else dict(imagenet_c_reference),
                reference_clean_error=reference_clean_error,
            )
        else:
            summary = get_runner(benchmark)(context)
        store.put_summary(model_name, checkpoint_digest, benchmark, summary)
        results[benchmark] = summary
    if rank == 0:
        write_reports(store, out_dir, plots=plots)
    return results
