"""Command line: ``python -m integrations.vision.train --model NAME --data-root PATH [...]``.

Single process: ``python -m integrations.vision.train --model deit --data-root data --out-dir runs/deit``.
One node, 8 GPUs: ``torchrun --nproc_per_node=8 -m integrations.vision.train --model deit --data-root imagenet``.
Several nodes: ``torchrun --nnodes=4 --node_rank=R --rdzv-endpoint=HOST:PORT --nproc_per_node=8 -m ...``.
PACS: ``--preset pacs --pacs-target sketch --data-root PACS --init-weights imagenet.safetensors``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from integrations.vision.training import (
    PRESET_NAMES,
    TrainConfig,
    find_checkpoint,
    init_distributed,
    preset,
    shutdown_distributed,
    train_image_folder,
    train_pacs,
)
from integrations.vision.training.engine import TrainResult

__all__ = ["build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the trainer's command line."""
    parser = argparse.ArgumentParser(prog="python -m integrations.vision.train",
                                     description="Train a timm-registered model (DDP under torchrun).")
    parser.add_argument("--model", required=True, help="timm-registered model name, e.g. deit, rvt_vars_d")
    parser.add_argument("--data-root", required=True,
                        help="ImageFolder root with train/ and val/ (PACS mode: root with one folder per domain)")
    parser.add_argument("--out-dir", default=None, help="run folder for checkpoints and logs (default: none)")
    parser.add_argument("--preset", default="imagenet", choices=PRESET_NAMES, help="recipe preset")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="GLOBAL batch size (split over processes)")
    parser.add_argument("--lr", type=float, default=None, help="absolute peak learning rate")
    parser.add_argument("--img-size", type=int, default=None)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--amp", default=None, choices=("auto", "none", "fp16", "bf16"))
    parser.add_argument("--step-size-refresh-interval", type=int, default=None,
                        help="iterations between VARS-S step-size refreshes (default 100; 0 disables)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override any TrainConfig field, e.g. --set mixup=0 --set model_ema=false")
    parser.add_argument("--model-kwargs", default="{}", help="JSON object of extra model constructor arguments")
    parser.add_argument("--resume", default=None,
                        help="checkpoint or run folder to continue from (its run folder is the default --out-dir)")
    parser.add_argument("--overwrite", action="store_true", help="replace another run's checkpoint in --out-dir")
    parser.add_argument("--init-weights", default=None, help="weights file to start from (head skipped)")
    parser.add_argument("--pacs-target", default=None, help="PACS mode: the held-out domain, e.g. sketch")
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"), help="force a device")
    parser.add_argument("--max-epochs-this-run", type=int, default=None,
                        help="stop after this many epochs (resume later with --resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--compile", action="store_true",
                        help="train through torch.compile (the first steps compile; checkpoints are unaffected)")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset named by ``--preset`` with the command-line overrides applied.

    Args:
        args: Parsed arguments of :func:`build_parser`.
    """
    overrides: dict[str, Any] = {}
    for flag, field_name in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"),
                             ("img_size", "img_size"), ("num_workers", "num_workers"), ("seed", "seed"),
                             ("amp", "amp"), ("step_size_refresh_interval", "step_size_refresh_interval")):
        value = getattr(args, flag)
        if value is not None:
            overrides[field_name] = value
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        name, text = item.split("=", 1)
        overrides[name.strip()] = TrainConfig.parse_field(name.strip(), text.strip())
    return preset(args.preset, **overrides)


def main(argv: Sequence[str] | None = None) -> TrainResult:
    """Parse ``argv``, join torchrun's process group if any, and train.

    Args:
        argv: Command-line arguments (``sys.argv[1:]`` when ``None``).
    """
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    model_kwargs = json.loads(args.model_kwargs)
    if not isinstance(model_kwargs, dict):
        raise ValueError(f"--model-kwargs must be a JSON object, got {args.model_kwargs!r}")
    out_dir = args.out_dir
    if out_dir is None and args.resume is not None:
        files = find_checkpoint(args.resume)
        if files is None:
            raise ValueError(f"--resume {args.resume!r} holds no checkpoint (no run.json / latest.json)")
        out_dir = str(files.folder.parent.parent)  # keep writing into the run being resumed
    context = init_distributed(args.device)
    try:
        common: dict[str, Any] = dict(context=context, resume=args.resume, overwrite=args.overwrite,
                                      init_weights=args.init_weights, progress=not args.no_progress,
                                      max_epochs=args.max_epochs_this_run, model_kwargs=model_kwargs,
                                      compile_model=args.compile)
        if args.pacs_target is not None:
            return train_pacs(args.model, args.data_root, args.pacs_target, out_dir, config, **common)
        return train_image_folder(args.model, args.data_root, out_dir, config, **common)
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
