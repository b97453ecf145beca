"""Runners of the classification benchmarks, all on :func:`evaluate`.

Each takes a :class:`BenchmarkContext` and returns a small JSON-serialisable summary; accuracies
are percentages. Work is split into entries stored as they finish (ImageNet-C: one per
corruption × severity; PACS: one per held-out domain; others: ``"all"``).
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path
from typing import Any

import torch

from .attacks import fgsm_attack, pgd_attack
from .class_folder import ClassFolderDataset
from .corruption_metrics import (
    corruption_errors,
    mean_corruption_accuracy,
    mean_corruption_error,
    relative_mean_corruption_error,
)
from .evaluation import evaluate
from .image_files import DatasetLayoutError
from .imagenet_facts import (
    IMAGENET_C_CORRUPTIONS,
    IMAGENET_C_EXTRA_CORRUPTIONS,
    IMAGENET_C_SEVERITIES,
    PACS_DOMAINS,
    alexnet_imagenet_c_errors,
    imagenet_a_wnids,
    imagenet_r_wnids,
    imagenet_wnids,
)
from .benchmark_context import BenchmarkContext
from .data_root import DATASET_LAYOUTS
from .loading import distributed_context

__all__ = [
    "run_clean",
    "run_imagenet_c",
    "run_imagenet_r",
    "run_imagenet_a",
    "run_imagenet_sketch",
    "run_pgd",
    "run_fgsm",
    "run_pacs",
    "imagenet_c_layout",
    "two_hundred_class_subset",
]


def _evaluate_folder(
    context: BenchmarkContext, root: Path, key: str, *, desc: str, resize: bool | None = None, **kwargs: Any
) -> dict[str, Any]:
    dataset = ClassFolderDataset(
        root, context.class_names, context.preprocessing(resize=resize), layout=DATASET_LAYOUTS[key]
    )
    counts = evaluate(
        context.model,
        context.loader(dataset),
        mean=context.mean,
        std=context.std,
        device=context.device,
        progress=context.progress,
        desc=desc,
        **kwargs,
    )
    return counts.to_dict()


def run_clean(context: BenchmarkContext) -> dict[str, Any]:
    """Clean top-1 on ``val/<class>/*`` (resize + center crop).

    Args:
        context: The benchmark context.

    Returns:
        ``{"top1", "correct", "total", "failed"}``.
    """
    root = context.data_root.resolve("imagenet_val")
    return context.recorder.run("all", lambda: _evaluate_folder(context, root, "imagenet_val", desc="clean"))


def two_hundred_class_subset(class_names: tuple[str, ...], official: tuple[str, ...], present: tuple[int, ...]) -> list[int]:
    """The logits an ImageNet-R/-A classifier is scored on.

    With the 1000 ImageNet wnids as label space, the official 200 wnids mapped to their 1k indices
    (ascending; the folders present must be among them). With any other label space (the demo),
    the classes whose folders are present.

    Args:
        class_names: The label space.
        official: The data set's official 200 wnids.
        present: Indices of the class folders present.

    Returns:
        Sorted class indices.
    """
    if tuple(class_names) != imagenet_wnids():
        return sorted(present)
    index_of = {name: i for i, name in enumerate(class_names)}
    subset = sorted(index_of[w] for w in official)
    extra = sorted(set(present) - set(subset))
    if extra:
        raise DatasetLayoutError(
            f"folders {[class_names[i] for i in extra][:5]} are not among the data set's 200 listed classes"
        )
    return subset


def _run_subset_benchmark(context: BenchmarkContext, key: str, official: tuple[str, ...]) -> dict[str, Any]:
    root = context.data_root.resolve(key)

    def compute() -> dict[str, Any]:
        dataset = ClassFolderDataset(root, context.class_names, context.preprocessing(), layout=DATASET_LAYOUTS[key])
        subset = two_hundred_class_subset(context.class_names, official, dataset.present_class_indices)
        counts = evaluate(
            context.model,
            context.loader(dataset),
            mean=context.mean,
            std=context.std,
            logit_subset=subset,
            device=context.device,
            progress=context.progress,
            desc=key,
        )
        return {**counts.to_dict(), "classes_scored": len(subset)}

    return context.recorder.run("all", compute)


def run_imagenet_r(context: BenchmarkContext) -> dict[str, Any]:
    """ImageNet-R top-1 over the 200-class logit subset.

    Args:
        context: The benchmark context.

    Returns:
        ``{"top1", "correct", "total", "failed", "classes_scored"}``.
    """
    return _run_subset_benchmark(context, "imagenet_r", imagenet_r_wnids())


def run_imagenet_a(context: BenchmarkContext) -> dict[str, Any]:
    """ImageNet-A top-1 over the 200-class logit subset.

    Args:
        context: The benchmark context.

    Returns:
        ``{"top1", "correct", "total", "failed", "classes_scored"}``.
    """
    return _run_subset_benchmark(context, "imagenet_a", imagenet_a_wnids())


def run_imagenet_sketch(context: BenchmarkContext) -> dict[str, Any]:
    """ImageNet-Sketch top-1 over all classes.

    Args:
        context: The benchmark context.

    Returns:
        ``{"top1", "correct", "total", "failed"}``.
    """
    root = context.data_root.resolve("imagenet_sketch")
    return context.recorder.run("all", lambda: _evaluate_folder(context, root, "imagenet_sketch", desc="sketch"))


def _attack_generator(context: BenchmarkContext) -> torch.Generator:
    rank = distributed_context()[0]
    return torch.Generator(device=torch.device(context.device)).manual_seed(context.seed + rank)


def run_pgd(
    context: BenchmarkContext, *, eps: float = 1 / 255, alpha: float = 0.5 / 255, steps: int = 5
) -> dict[str, Any]:
    """Top-1 on clean val images under untargeted L∞ PGD (uniform random start, seeded).

    Args:
        context: The benchmark context.
        eps: L∞ radius in pixel units.
        alpha: Step in pixel units.
        steps: Number of steps.

    Returns:
        ``{"top1", "correct", "total", "failed", "eps", "alpha", "steps"}``.
    """
    root = context.data_root.resolve("imagenet_val")

    def compute() -> dict[str, Any]:
        attack = partial(
            pgd_attack, eps=eps, alpha=alpha, steps=steps, random_start=True, generator=_attack_generator(context)
        )
        counts = _evaluate_folder(context, root, "imagenet_val", desc="pgd", attack=attack)
        return {**counts, "eps": eps, "alpha": alpha, "steps": steps}

    return context.recorder.run("all", compute)


def run_fgsm(context: BenchmarkContext, *, eps: float = 1 / 255) -> dict[str, Any]:
    """Top-1 on clean val images under one FGSM step of ``eps`` (no random start).

    Args:
        context: The benchmark context.
        eps: Step / radius in pixel units.

    Returns:
        ``{"top1", "correct", "total", "failed", "eps"}``.
    """
    root = context.data_root.resolve("imagenet_val")

    def compute() -> dict[str, Any]:
        attack = partial(fgsm_attack, eps=eps)
        return {**_evaluate_folder(context, root, "imagenet_val", desc="fgsm", attack=attack), "eps": eps}

    return context.recorder.run("all", compute)


def imagenet_c_layout(root: Path) -> list[tuple[str, int, Path]]:
    """The (corruption, severity, folder) leaves present under an ImageNet-C root.

    Known corruptions (the 15 benchmark ones, then the 4 extra ones) come first in their usual
    order, then any other corruption folder, sorted; severities ascend.

    Args:
        root: The ImageNet-C folder.

    Returns:
        The leaves.

    Raises:
        DatasetLayoutError: No corruption folder with severity sub-folders 1..5 exists.
    """
    if not root.is_dir():
        raise DatasetLayoutError(f"ImageNet-C folder {root} does not exist; expected {DATASET_LAYOUTS['imagenet_c']}")
    known = list(IMAGENET_C_CORRUPTIONS) + list(IMAGENET_C_EXTRA_CORRUPTIONS)
    folders = {p.name: p for p in root.iterdir() if p.is_dir()}
    order = [c for c in known if c in folders] + sorted(c for c in folders if c not in known)
    leaves: list[tuple[str, int, Path]] = []
    for corruption in order:
        for severity in IMAGENET_C_SEVERITIES:
            leaf = folders[corruption] / str(severity)
            if leaf.is_dir():
                leaves.append((corruption, severity, leaf))
        stray = [p.name for p in folders[corruption].iterdir() if p.is_dir() and p.name not in {"1", "2", "3", "4", "5"}]
        if stray:
            raise DatasetLayoutError(
                f"{folders[corruption]} has folders {stray[:5]} that are not severities 1..5; "
                f"expected {DATASET_LAYOUTS['imagenet_c']}"
            )
    if not leaves:
        raise DatasetLayoutError(f"{root} has no <corruption>/<severity> folders; expected {DATASET_LAYOUTS['imagenet_c']}")
    return leaves


def run_imagenet_c(
    context: BenchmarkContext,
    *,
    reference_errors: dict[str, float] | None = None,
    reference_clean_error: float | None = None,
) -> dict[str, Any]:
    """ImageNet-C: top-1 per corruption × severity (center crop only), then E_c, CE_c, mCE, mean accuracy.

    mCE and the mean corruption accuracy are over the corruptions the reference covers (AlexNet's
    15 by default; the 4 extra ones are reported in ``corruption_errors`` but never averaged; with
    no covered corruption the accuracy averages all and mCE is omitted); ``complete`` says whether
    all 15 benchmark corruptions × 5 severities were scored.
    A relative mCE is added when ``reference_clean_error`` is given and the clean benchmark ran first.

    Args:
        context: The benchmark context.
        reference_errors: corruption → reference ``E_c`` (fraction); None = AlexNet.
        reference_clean_error: Reference model's clean error (fraction), for the relative mCE.

    Returns:
        Summary with ``mce``, ``mean_corruption_accuracy``, ``corruption_errors``, ``ce`` (per
        corruption) and failure counts.
    """
    root = context.data_root.resolve("imagenet_c")
    severity_errors: dict[str, dict[int, float]] = {}
    failed = 0
    for corruption, severity, leaf in imagenet_c_layout(root):
        result = context.recorder.run(
            f"{corruption}/{severity}",
            lambda leaf=leaf, name=f"{corruption}/{severity}": _evaluate_folder(
                context, leaf, "imagenet_c", desc=name, resize=False
            ),
        )
        failed += int(result["failed"])
        severity_errors.setdefault(corruption, {})[severity] = 1.0 - float(result["top1"]) / 100.0
    errors = corruption_errors(severity_errors)
    reference = alexnet_imagenet_c_errors() if reference_errors is None else dict(reference_errors)
    scored = {c: e for c, e in errors.items() if c in reference}
    averaged = {c: severity_errors[c] for c in (scored or errors)}
    summary: dict[str, Any] = {
        "mean_corruption_accuracy": mean_corruption_accuracy(averaged),
        "corruption_errors": errors,
        "failed": failed,
        "complete": all(len(severity_errors.get(c, {})) == 5 for c in IMAGENET_C_CORRUPTIONS),
        "reference": "alexnet" if reference_errors is None else "custom",
    }
    if scored:
        summary["mce"] = mean_corruption_error(scored, reference)
        summary["ce"] = {c: 100.0 * e / reference[c] for c, e in scored.items()}
        clean = context.previous.get("clean")
        if reference_clean_error is not None and clean is not None:
            summary["relative_mce"] = relative_mean_corruption_error(
                scored, 1.0 - float(clean["top1"]) / 100.0, reference, reference_clean_error
            )
    return summary


def _pacs_domain_datasets(context: BenchmarkContext, root: Path) -> tuple[tuple[str, ...], dict[str, ClassFolderDataset]]:
    missing = [d for d in PACS_DOMAINS if not (root / d).is_dir()]
    if missing:
        raise DatasetLayoutError(f"PACS folder {root} lacks domains {missing}; expected {DATASET_LAYOUTS['pacs']}")
    class_sets = {d: tuple(sorted(p.name for p in (root / d).iterdir() if p.is_dir())) for d in PACS_DOMAINS}
    classes = class_sets[PACS_DOMAINS[0]]
    differing = [d for d, names in class_sets.items() if names != classes]
    if differing or not classes:
        raise DatasetLayoutError(
            f"PACS domains must share the same class folders; {PACS_DOMAINS[0]} has {list(classes)}, "
            f"differing domains: {differing}; expected {DATASET_LAYOUTS['pacs']}"
        )
    preprocessing = context.preprocessing()
    datasets = {
        d: ClassFolderDataset(root / d, classes, preprocessing, layout=DATASET_LAYOUTS["pacs"]) for d in PACS_DOMAINS
    }
    return classes, datasets


def run_pacs(context: BenchmarkContext) -> dict[str, Any]:
    """PACS leave-one-domain-out: fine-tune a copy on 3 domains, top-1 on the 4th, for each domain.

    The label space is the PACS class folders (sorted); ``finetune_fn(copy_of_model, [datasets])``
    must return a model whose logits index those classes. The source datasets yield unnormalised
    [0, 1] images; the evaluation normalises with the context's mean/std.

    Args:
        context: The benchmark context (``finetune_fn`` required).

    Returns:
        ``{"domains": {domain: top1}, "mean": top1 mean, "classes": [...], "failed": n}``.
    """
    if context.finetune_fn is None:
        raise ValueError("the pacs benchmark needs finetune_fn(model, train_datasets) -> model, got None")
    root = context.data_root.resolve("pacs")
    classes, datasets = _pacs_domain_datasets(context, root)

    def compute(target: str) -> dict[str, Any]:
        sources = [datasets[d] for d in PACS_DOMAINS if d != target]
        tuned = context.finetune_fn(copy.deepcopy(context.model), sources)
        if not isinstance(tuned, torch.nn.Module):
            raise TypeError(f"finetune_fn must return an nn.Module, got {type(tuned).__name__}")
        counts = evaluate(
            tuned,
            context.loader(datasets[target]),
            mean=context.mean,
            std=context.std,
            device=context.device,
            progress=context.progress,
            desc=f"pacs/{target}",
        )
        return counts.to_dict()

    results = {d: context.recorder.run(d, partial(compute, d)) for d in PACS_DOMAINS}
    return {
        "domains": {d: r["top1"] for d, r in results.items()},
        "mean": sum(r["top1"] for r in results.values()) / len(results),
        "classes": list(classes),
        "failed": sum(int(r["failed"]) for r in results.values()),
    }
