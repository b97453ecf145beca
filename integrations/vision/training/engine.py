"""The training loop: one :class:`Trainer` for a CPU demo, one GPU, or many nodes under torchrun (DDP)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from .checkpoint import (
    CHECKPOINT_DIRNAME,
    CheckpointFiles,
    capture_rng_state,
    find_checkpoint,
    load_model_weights,
    load_training_state,
    read_run_record,
    restore_rng_state,
    write_checkpoint,
)
from .config import TrainConfig
from .curves import plot_training_curve, read_jsonl, write_jsonl
from .data import build_eval_loader, build_train_loader, dataset_num_classes
from .distributed import DistributedContext, per_process_batch_size
from .step_size import refresh_step_sizes

__all__ = ["METRICS_FILE", "STEP_LOSSES_FILE", "CURVE_FILE", "Trainer", "TrainResult", "run_fingerprint",
           "seed_everything"]

METRICS_FILE = "metrics.jsonl"
STEP_LOSSES_FILE = "step_losses.jsonl"
CURVE_FILE = "training_curve.png"
# Fields that change how a run is executed, not what it computes.
_NON_IDENTITY_FIELDS = ("num_workers", "log_interval")


def seed_everything(seed: int) -> None:
    """Seed ``torch`` (CPU and CUDA), numpy's global generator and ``random`` with ``seed``.

    Args:
        seed: Non-negative seed.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def run_fingerprint(model_name: str, model_kwargs: dict[str, Any], config: TrainConfig, manifest: str) -> str:
    """SHA-256 of (model name, model kwargs, config less execution-only fields, data manifest): a run's identity.

    Args:
        model_name: Registered model name.
        model_kwargs: Extra constructor arguments.
        config: The recipe.
        manifest: Data manifest (see :func:`~integrations.vision.training.data.data_manifest`).
    """
    recipe = {k: v for k, v in config.to_dict().items() if k not in _NON_IDENTITY_FIELDS}
    payload = json.dumps({"model": model_name, "model_kwargs": model_kwargs, "config": recipe, "data": manifest},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Args:
        model: The trained, unwrapped model.
        history: One record per completed epoch (including epochs before a resume).
        step_losses: Per-step training losses (mean over all processes) of the epochs run in this call.
        checkpoint: The last checkpoint written, or ``None`` without an output folder.
        ema_model: The EMA copy of the model when the recipe keeps one.
    """

    model: nn.Module
    history: list[dict[str, Any]]
    step_losses: list[list[float]] = field(default_factory=list)
    checkpoint: CheckpointFiles | None = None
    ema_model: nn.Module | None = None


class Trainer:
    """Minimise the (mixed, smoothed) cross-entropy of ``model`` on ``train_dataset`` with the ``config`` recipe.

    Per step: ``x, y ← Mixup(x, y)``; ``ℓ = CE(model(x), y)`` under autocast; scaled backward; AdamW step; per-step
    cosine learning rate; EMA update; every ``step_size_refresh_interval`` steps the VARS-S step-size refresh.
    Under torchrun each process takes ``batch_size / world_size`` images of each global batch and DDP averages the
    gradients; rank 0 alone logs and checkpoints (every epoch, atomically).

    Args:
        model: Unwrapped model (already built and initialised identically on every process).
        model_name: Its registered name, recorded in checkpoints and checked on resume.
        config: The recipe.
        train_dataset: Training dataset with the training transform applied.
        val_dataset: Evaluation dataset (evaluation transform), or ``None`` to skip evaluation.
        out_dir: Run folder for checkpoints and logs, or ``None`` to write nothing.
        context: Process placement (:func:`~integrations.vision.training.distributed.init_distributed`);
            ``None`` means one process on the CPU.
        model_kwargs: Constructor arguments of the model, recorded for rebuilding it.
        data_manifest: Identity of the data (:func:`~integrations.vision.training.data.data_manifest`).
        classes: Class names, recorded in the run record.
        resume: Checkpoint (or run folder) to continue from.
        overwrite: Replace a checkpoint already in ``out_dir`` that belongs to another run.
        progress: Show a tqdm progress bar (rank 0).
        compile_model: Train through ``torch.compile`` of the (DDP-wrapped) model: the first steps compile (minutes
            on a CPU), later ones run the fused graph. Evaluation, EMA, checkpoints and the step-size refresh use
            the model itself, so a run's checkpoints and resume do not depend on it.
    """

    def __init__(
        self,
        model: nn.Module,
        model_name: str,
        config: TrainConfig,
        train_dataset: Dataset,
        val_dataset: Dataset | None = None,
        out_dir: Path | str | None = None,
        *,
        context: DistributedContext | None = None,
        model_kwargs: dict[str, Any] | None = None,
        data_manifest: str = "",
        classes: list[str] | None = None,
        resume: Path | str | None = None,
        overwrite: bool = False,
        progress: bool = True,
        compile_model: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if not isinstance(compile_model, bool):
            raise TypeError(f"compile_model must be a bool, got {type(compile_model).__name__}")
        self.context = context or DistributedContext(0, 1, 0, torch.device("cpu"), None)
        self.per_process_batch = per_process_batch_size(config.batch_size, self.context.world_size)
        self.model = model
        self.model_name = model_name
        self.config = config
        self.train_dataset = train_dataset
        self.val_dataset = val_dataset
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.model_kwargs = dict(model_kwargs or {})
        self.data_manifest = data_manifest
        self.classes = list(classes) if classes is not None else getattr(train_dataset, "classes", None)
        self.num_classes = dataset_num_classes(train_dataset) if self.classes is None else len(self.classes)
        self.resume = Path(resume) if resume is not None else None
        self.overwrite = overwrite
        self.progress = progress
        self.compile_model = compile_model
        self.fingerprint = run_fingerprint(model_name, self.model_kwargs, config, data_manifest)

    # ------------------------------------------------------------------ set-up
    def _collective_check(self, check: Any) -> Any:
        """Run ``check`` on rank 0 and raise its ValueError on every rank (so no rank waits forever)."""
        outcome: list[Any] = [None, None]
        if self.context.is_main:
            try:
                outcome = [check(), None]
            except ValueError as error:
                outcome = [None, str(error)]
        if self.context.is_distributed:
            dist.broadcast_object_list(outcome, src=0)
        if outcome[1] is not None:
            raise ValueError(outcome[1])
        return outcome[0]

    def _check_resume(self) -> CheckpointFiles | None:
        if self.resume is None:
            return None
        files = find_checkpoint(self.resume)
        if files is None:
            raise ValueError(f"resume path {str(self.resume)!r} holds no checkpoint (no run.json / latest.json)")
        record = read_run_record(files)
        if record.get("model_name") != self.model_name:
            raise ValueError(
                f"resume checkpoint {str(files.folder)!r} was trained with model {record.get('model_name')!r}, "
                f"but this run builds model {self.model_name!r}"
            )
        if record.get("num_classes") != self.num_classes:
            raise ValueError(
                f"resume checkpoint {str(files.folder)!r} has {record.get('num_classes')} classes, "
                f"the data set has {self.num_classes}"
            )
        return files

    def _check_out_dir(self) -> None:
        if self.out_dir is None:
            return
        existing = find_checkpoint(self.out_dir)
        if existing is None:
            return
        resuming_here = self.resume is not None and (
            existing.folder.resolve() == (find_checkpoint(self.resume) or existing).folder.resolve()
        )
        if resuming_here or self.overwrite:
            return
        record = read_run_record(existing)
        if record.get("fingerprint") == self.fingerprint:
            raise ValueError(
                f"out_dir {str(self.out_dir)!r} already holds a checkpoint of this run (epoch {record.get('epoch')}); "
                "pass resume (--resume) to continue it or overwrite (--overwrite) to start again"
            )
        raise ValueError(
            f"out_dir {str(self.out_dir)!r} holds a different run's checkpoint (model {record.get('model_name')!r}, "
            f"epoch {record.get('epoch')}); pass resume (--resume) or overwrite (--overwrite), "
            "or choose another out_dir"
        )

    def _amp_dtype(self) -> torch.dtype | None:
        mode = self.config.amp
        if mode == "auto":
            mode = "fp16" if self.context.device.type == "cuda" else "none"
        return {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}[mode]

    def _criterion(self) -> nn.Module:
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

        if self.config.uses_mixup:
            return SoftTargetCrossEntropy()
        if self.config.label_smoothing > 0:
            return LabelSmoothingCrossEntropy(smoothing=self.config.label_smoothing)
        return nn.CrossEntropyLoss()

    def _mixup(self) -> Any:
        from timm.data import Mixup

        if not self.config.uses_mixup:
            return None
        if self.per_process_batch % 2:
            raise ValueError(f"Mixup/CutMix needs an even per-process batch, got {self.per_process_batch}")
        return Mixup(
            mixup_alpha=self.config.mixup,
            cutmix_alpha=self.config.cutmix,
            prob=self.config.mixup_prob,
            switch_prob=self.config.mixup_switch_prob,
            mode="batch",
            label_smoothing=self.config.label_smoothing,
            num_classes=self.num_classes,
        )

    # ------------------------------------------------------------------ loop
    def fit(self, max_epochs: int | None = None) -> TrainResult:
        """Train until ``config.epochs`` epochs are complete (or ``max_epochs`` more in this call), then return.

        Args:
            max_epochs: Stop after this many epochs in this call (an interruption that a later resume continues);
                ``None`` runs to the end.
        """
        if max_epochs is not None and max_epochs < 1:
            raise ValueError(f"max_epochs must be a positive int or None, got {max_epochs!r}")
        from timm.optim import create_optimizer_v2
        from timm.scheduler import CosineLRScheduler
        from timm.utils import ModelEmaV3

        config, ctx = self.config, self.context
        resume_files = self._collective_check(self._check_resume)
        self._collective_check(self._check_out_dir)
        if resume_files is None and self.resume is not None:  # non-main ranks: the check ran on rank 0 only
            resume_files = find_checkpoint(self.resume)

        model = self.model.to(ctx.device)
        pin = ctx.device.type == "cuda"
        train_loader, sampler, seeder = build_train_loader(
            self.train_dataset, config, self.per_process_batch, ctx.rank, ctx.world_size, pin_memory=pin)
        val_loader = None
        if self.val_dataset is not None:
            val_loader = build_eval_loader(self.val_dataset, config, self.per_process_batch, ctx.rank,
                                           ctx.world_size, pin_memory=pin)
        updates_per_epoch = len(train_loader)
        optimizer = create_optimizer_v2(model, opt=config.optimizer, lr=config.peak_lr,
                                        weight_decay=config.weight_decay)
        scheduler = CosineLRScheduler(
            optimizer,
            t_initial=config.epochs * updates_per_epoch,
            lr_min=config.min_lr,
            warmup_t=int(round(config.warmup_epochs * updates_per_epoch)),
            warmup_lr_init=config.warmup_lr,
            t_in_epochs=False,
        )
        amp_dtype = self._amp_dtype()
        scaler = torch.amp.GradScaler(ctx.device.type, enabled=amp_dtype == torch.float16)
        ema = ModelEmaV3(model, decay=config.model_ema_decay) if config.model_ema else None
        criterion = self._criterion()
        mixup = self._mixup()

        start_epoch, num_updates = 0, 0
        history: list[dict[str, Any]] = []
        step_history: list[dict[str, Any]] = []
        if resume_files is not None:
            start_epoch, num_updates = self._load_resume(resume_files, model, optimizer, scheduler, ema, scaler)
            previous_run = resume_files.folder.parent.parent  # <run>/checkpoints/epoch-XXXX
            history = [r for r in read_jsonl(previous_run / METRICS_FILE) if r["epoch"] <= start_epoch]
            step_history = [r for r in read_jsonl(previous_run / STEP_LOSSES_FILE) if r["epoch"] <= start_epoch]
        else:
            seed_everything(config.seed + ctx.rank)
            if ctx.is_main and self.overwrite and self.out_dir is not None:
                shutil.rmtree(self.out_dir / CHECKPOINT_DIRNAME, ignore_errors=True)
        scheduler.step_update(num_updates)

        wrapped: nn.Module = model
        if ctx.is_distributed:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        if self.compile_model:
            wrapped = torch.compile(wrapped)

        end_epoch = config.epochs if max_epochs is None else min(config.epochs, start_epoch + max_epochs)
        step_losses: list[list[float]] = []
        checkpoint: CheckpointFiles | None = None
        for epoch in range(start_epoch, end_epoch):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            seeder.epoch = epoch
            started = time.perf_counter()
            losses, num_updates = self._train_one_epoch(
                wrapped, model, train_loader, optimizer, scheduler, scaler, ema, criterion, mixup, amp_dtype,
                epoch, num_updates)
            seconds = time.perf_counter() - started
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": float(sum(losses) / len(losses)),
                "lr": float(optimizer.param_groups[0]["lr"]),
                "epoch_seconds": seconds,
                "train_images_per_second": updates_per_epoch * config.batch_size / seconds,
            }
            if val_loader is not None:
                record.update(self.evaluate(model, val_loader, amp_dtype))
                if ema is not None:
                    record.update({f"ema_{k}": v for k, v in self.evaluate(ema.module, val_loader, amp_dtype).items()})
            history.append(record)
            step_history.append({"epoch": epoch + 1, "losses": losses})
            step_losses.append(losses)
            rng_states = self._gather_rng()
            if ctx.is_main and self.out_dir is not None:
                checkpoint = self._save(model, optimizer, scheduler, ema, scaler, rng_states, epoch + 1, num_updates,
                                        record)
                write_jsonl(self.out_dir / METRICS_FILE, history)
                write_jsonl(self.out_dir / STEP_LOSSES_FILE, step_history)
                plot_training_curve(history, self.out_dir / CURVE_FILE, title=self.model_name)
            if ctx.is_main and self.progress:
                tqdm.write(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in record.items()}))
        if ctx.is_distributed:
            dist.barrier()
        if checkpoint is None and self.out_dir is not None and ctx.is_main:
            checkpoint = find_checkpoint(self.out_dir)
        return TrainResult(model=model, history=history, step_losses=step_losses, checkpoint=checkpoint,
                           ema_model=ema.module if ema is not None else None)

    def _train_one_epoch(self, wrapped: nn.Module, model: nn.Module, loader: Any, optimizer: Any, scheduler: Any,
                         scaler: Any, ema: Any, criterion: nn.Module, mixup: Any, amp_dtype: torch.dtype | None,
                         epoch: int, num_updates: int) -> tuple[list[float], int]:
        config, ctx = self.config, self.context
        wrapped.train()
        step_losses: list[torch.Tensor] = []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, dynamic_ncols=True,
                   disable=not (self.progress and ctx.is_main))
        for step, (images, targets) in enumerate(bar):
            if config.step_size_refresh_interval and num_updates % config.step_size_refresh_interval == 0:
                refresh_step_sizes(model, config.step_size_refresh_momentum)
            images = images.to(ctx.device, non_blocking=True)
            targets = targets.to(ctx.device, non_blocking=True)
            if mixup is not None:
                images, targets = mixup(images, targets)
            with self._autocast(amp_dtype):
                loss = criterion(wrapped(images), targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.clip_grad is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            num_updates += 1
            scheduler.step_update(num_updates)
            if ema is not None:
                ema.update(model, step=num_updates)
            step_losses.append(loss.detach().float())
            if (step + 1) % config.log_interval == 0 and not bar.disable:
                bar.set_postfix(loss=f"{step_losses[-1].item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        stacked = torch.stack(step_losses)
        if ctx.is_distributed:
            dist.all_reduce(stacked)
            stacked /= ctx.world_size
        values = stacked.cpu().tolist()
        if not all(math.isfinite(v) for v in values):
            raise FloatingPointError(f"non-finite training loss in epoch {epoch + 1}: {values}")
        return values, num_updates

    def _autocast(self, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.context.device.type, dtype=amp_dtype)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any, amp_dtype: torch.dtype | None = None) -> dict[str, float]:
        """Mean cross-entropy and top-1 / top-5 accuracy (%) of ``model`` over the whole of ``loader``'s data.

        Each rank evaluates its shard; sums are all-reduced, so the numbers are exact over all processes.

        Args:
            model: Model to evaluate (unwrapped).
            loader: Evaluation loader (see :func:`~integrations.vision.training.data.build_eval_loader`).
            amp_dtype: Autocast dtype, or ``None`` for full precision.
        """
        was_training = model.training
        model.eval()
        totals = torch.zeros(4, dtype=torch.float64, device=self.context.device)
        for images, targets in loader:
            images = images.to(self.context.device, non_blocking=True)
            targets = targets.to(self.context.device, non_blocking=True)
            with self._autocast(amp_dtype):
                logits = model(images)
            logits = logits.float()
            top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
            hits = top.eq(targets[:, None])
            totals += torch.stack([
                nn.functional.cross_entropy(logits, targets, reduction="sum").double(),
                hits[:, 0].sum().double(),
                hits.any(dim=-1).sum().double(),
                torch.tensor(float(len(targets)), dtype=torch.float64, device=self.context.device),
            ])
        if self.context.is_distributed:
            dist.all_reduce(totals)
        model.train(was_training)
        count = max(totals[3].item(), 1.0)
        return {"val_loss": totals[0].item() / count, "val_acc1": 100 * totals[1].item() / count,
                "val_acc5": 100 * totals[2].item() / count}

    # ------------------------------------------------------------------ state
    def _gather_rng(self) -> list[dict[str, Any]]:
        state = capture_rng_state()
        if not self.context.is_distributed:
            return [state]
        gathered: list[Any] = [None] * self.context.world_size
        dist.all_gather_object(gathered, state)
        return gathered

    def _save(self, model: nn.Module, optimizer: Any, scheduler: Any, ema: Any, scaler: Any,
              rng_states: list[dict[str, Any]], epoch: int, num_updates: int,
              record: dict[str, Any]) -> CheckpointFiles:
        state = {
            "epoch": epoch,
            "num_updates": num_updates,
            "sampler_epoch": epoch,
            "world_size": self.context.world_size,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "ema": ema.module.state_dict() if ema is not None else None,
            "scaler": scaler.state_dict(),
            "rng": rng_states,
        }
        run_record = {
            "model_name": self.model_name,
            "model_kwargs": self.model_kwargs,
            "config": self.config.to_dict(),
            "data_manifest": self.data_manifest,
            "fingerprint": self.fingerprint,
            "classes": self.classes,
            "num_classes": self.num_classes,
            "epoch": epoch,
            "num_updates": num_updates,
            "world_size": self.context.world_size,
            "finished": epoch >= self.config.epochs,
            "metrics": record,
        }
        assert self.out_dir is not None
        return write_checkpoint(self.out_dir, epoch, model, state, run_record)

    def _load_resume(self, files: CheckpointFiles, model: nn.Module, optimizer: Any, scheduler: Any, ema: Any,
                     scaler: Any) -> tuple[int, int]:
        load_model_weights(model, files)
        state = load_training_state(files)
        optimizer.load_state_dict(state["optimizer"])
        saved_recipe = read_run_record(files).get("config", {})
        same_recipe = all(saved_recipe.get(k) == v for k, v in self.config.to_dict().items()
                          if k not in _NON_IDENTITY_FIELDS)
        if same_recipe:  # a changed recipe (e.g. more epochs) keeps the schedule rebuilt from the new config
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            if state["ema"] is None:
                ema.module.load_state_dict(model.state_dict())
            else:
                ema.module.load_state_dict(state["ema"])
        rng = state["rng"]
        if len(rng) == self.context.world_size:
            restore_rng_state(rng[self.context.rank])
        else:  # a different number of processes: fresh, still deterministic, streams
            seed_everything(self.config.seed + 7919 * int(state["epoch"]) + self.context.rank)
        return int(state["epoch"]), int(state["num_updates"])
