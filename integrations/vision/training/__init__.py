"""One trainer from the CPU demo to multi-node ImageNet (torchrun + DDP), built from timm's components.

Entry points: :func:`train_image_folder` (what ``python -m integrations.vision.train`` runs), :func:`train_demo`
(the cached CPU demo), :func:`finetune_pacs` / :func:`train_pacs` (PACS fine-tuning), and the :class:`Trainer`
they share; recipes are :class:`TrainConfig` presets (``imagenet``, ``demo``, ``pacs``).
"""

from .checkpoint import CheckpointFiles, find_checkpoint, load_model_weights, read_run_record
from .config import IMAGENET_MEAN, IMAGENET_STD, PRESET_NAMES, TrainConfig, preset
from .data import TransformedDataset, build_transform, data_manifest, validate_image_folder
from .demo import train_demo
from .distributed import DistributedContext, init_distributed, per_process_batch_size, shutdown_distributed
from .engine import Trainer, TrainResult, run_fingerprint, seed_everything
from .image_folder import train_image_folder
from .models import build_model, load_initial_weights
from .pacs import PACS_DOMAINS, finetune_pacs, train_pacs
from .step_size import refresh_step_sizes, unwrap_model
from .synthetic import write_synthetic_image_folder

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PACS_DOMAINS",
    "PRESET_NAMES",
    "CheckpointFiles",
    "DistributedContext",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TransformedDataset",
    "build_model",
    "build_transform",
    "data_manifest",
    "find_checkpoint",
    "finetune_pacs",
    "init_distributed",
    "load_initial_weights",
    "load_model_weights",
    "per_process_batch_size",
    "preset",
    "read_run_record",
    "refresh_step_sizes",
    "run_fingerprint",
    "seed_everything",
    "shutdown_distributed",
    "train_demo",
    "train_image_folder",
    "train_pacs",
    "unwrap_model",
    "validate_image_folder",
    "write_synthetic_image_folder",
]
