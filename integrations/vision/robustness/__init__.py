"""Robustness benchmark suite: data layouts, metrics, pixel-space attacks, resumable runners.

Conventions: every dataset yields unnormalised float images in [0, 1] of shape (3, H, W) and an int
label; the evaluation normalises inside (:class:`NormalizedModel`), so attacks work in pixel space.
The label space is a parameter (default: the 1000 sorted ImageNet wnids). Entry point:
:func:`run_suite`; single benchmarks by name via :data:`BENCHMARKS`.
"""

from .attacks import fgsm_attack, pgd_attack
from .attention_datasets import MIT1003FixationDataset, VOCForegroundDataset
from .attention_metrics import (
    SegmentationScores,
    attention_nss,
    foreground_from_attention,
    mean_segmentation_scores,
    normalize_attention,
    normalized_scanpath_saliency,
    resize_map,
    segmentation_scores,
)
from .benchmark_context import AttentionFn, BenchmarkContext, FinetuneFn
from .class_folder import ClassFolderDataset
from .classification_metrics import accuracy_percent, top1_correct
from .classification_runners import imagenet_c_layout, two_hundred_class_subset
from .corruption_metrics import (
    corruption_errors,
    mean_corruption_accuracy,
    mean_corruption_error,
    relative_mean_corruption_error,
)
from .data_root import DATASET_FOLDERS, DATASET_LAYOUTS, DataRoot, add_data_arguments, data_root_from_args
from .evaluation import EvaluationCounts, all_reduce_sums, evaluate
from .image_files import CorruptImageError, DatasetLayoutError, load_rgb
from .imagenet_facts import (
    IMAGENET_C_CORRUPTIONS,
    IMAGENET_C_EXTRA_CORRUPTIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PACS_DOMAINS,
    alexnet_imagenet_c_errors,
    imagenet_a_wnids,
    imagenet_r_wnids,
    imagenet_wnids,
)
from .loading import (
    Batch,
    FailedSample,
    SkipCorruptImages,
    UnpaddedDistributedSampler,
    collate_dropping_failures,
    limit_dataset,
    make_loader,
)
from .normalized_model import LogitSubset, NormalizedModel
from .preprocessing import CropBox, Preprocessing
from .registry import BENCHMARKS, get_runner
from .report_writers import markdown_table, plot_corruption_severity, plot_robustness_bars, write_json
from .result_store import EntryRecorder, ResultStore, atomic_write_text, checkpoint_digest
from .suite import run_suite, write_reports

__all__ = [
    "AttentionFn",
    "BENCHMARKS",
    "Batch",
    "BenchmarkContext",
    "ClassFolderDataset",
    "CorruptImageError",
    "CropBox",
    "DATASET_FOLDERS",
    "DATASET_LAYOUTS",
    "DataRoot",
    "DatasetLayoutError",
    "EntryRecorder",
    "EvaluationCounts",
    "FailedSample",
    "FinetuneFn",
    "IMAGENET_C_CORRUPTIONS",
    "IMAGENET_C_EXTRA_CORRUPTIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LogitSubset",
    "MIT1003FixationDataset",
    "NormalizedModel",
    "PACS_DOMAINS",
    "Preprocessing",
    "ResultStore",
    "SegmentationScores",
    "SkipCorruptImages",
    "UnpaddedDistributedSampler",
    "VOCForegroundDataset",
    "accuracy_percent",
    "add_data_arguments",
    "alexnet_imagenet_c_errors",
    "all_reduce_sums",
    "atomic_write_text",
    "attention_nss",
    "checkpoint_digest",
    "collate_dropping_failures",
    "corruption_errors",
    "data_root_from_args",
    "evaluate",
    "fgsm_attack",
    "foreground_from_attention",
    "get_runner",
    "imagenet_a_wnids",
    "imagenet_c_layout",
    "imagenet_r_wnids",
    "imagenet_wnids",
    "limit_dataset",
    "load_rgb",
    "make_loader",
    "markdown_table",
    "mean_corruption_accuracy",
    "mean_corruption_error",
    "mean_segmentation_scores",
    "normalize_attention",
    "normalized_scanpath_saliency",
    "pgd_attack",
    "plot_corruption_severity",
    "plot_robustness_bars",
    "relative_mean_corruption_error",
    "resize_map",
    "run_suite",
    "segmentation_scores",
    "top1_correct",
    "two_hundred_class_subset",
    "write_json",
    "write_reports",
]
