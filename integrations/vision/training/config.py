"""The training recipe as one dataclass, with named presets (``imagenet``, ``demo``, ``pacs``)."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRESET_NAMES",
    "TrainConfig",
    "preset",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_AMP_MODES = ("auto", "none", "fp16", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """A complete training recipe; the learning rate is ``lr = lr_base · batch_size / lr_base_batch``.

    The defaults are the DeiT / VARS ImageNet recipe: AdamW (weight decay 0.05), peak learning rate
    5e-4 per 512 images of global batch, 300 epochs of per-iteration cosine decay after 5 linear warm-up
    epochs, RandAugment ``rand-m9-mstd0.5-inc1``, random erasing 0.25, bicubic resizing, Mixup 0.8 /
    CutMix 1.0 with label smoothing 0.1, drop-path 0.1, repeated augmentation (3 repeats), model EMA.

    Args:
        epochs: Number of training epochs.
        batch_size: GLOBAL batch size, split evenly over the processes of a distributed run.
        lr: Absolute peak learning rate; ``None`` scales ``lr_base`` by ``batch_size / lr_base_batch``.
        lr_base: Peak learning rate for a global batch of ``lr_base_batch`` images.
        lr_base_batch: Reference batch size of ``lr_base``.
        min_lr: Floor of the cosine schedule.
        warmup_lr: Learning rate at the first iteration of the warm-up.
        warmup_epochs: Epochs of linear warm-up (may be fractional).
        optimizer: Name understood by ``timm.optim.create_optimizer_v2``.
        weight_decay: Decoupled weight decay (biases and norm parameters are exempt).
        clip_grad: Maximum global gradient norm, or ``None`` for no clipping.
        img_size: Side of the square training / evaluation images.
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation standard deviation.
        interpolation: Resize interpolation (``"bicubic"``, ``"bilinear"``...).
        crop_pct: Centre-crop fraction of the evaluation transform.
        train_scale: Area range of ``RandomResizedCrop``.
        hflip: Horizontal flip probability.
        color_jitter: Colour jitter strength (ignored when ``auto_augment`` is set).
        auto_augment: timm auto-augment policy string, or ``None``.
        random_erasing: Random erasing probability.
        mixup: Mixup alpha (0 disables).
        cutmix: CutMix alpha (0 disables).
        mixup_prob: Probability of applying Mixup/CutMix to a batch.
        mixup_switch_prob: Probability of CutMix instead of Mixup when both are enabled.
        label_smoothing: Label smoothing of the targets.
        repeated_augmentation: Number of repeats of ``RepeatAugSampler``; 0 or 1 disables it.
        drop_path: Stochastic depth rate given to the model.
        model_ema: Keep an exponential moving average of the weights.
        model_ema_decay: Decay of that average.
        amp: ``"auto"`` (fp16 + GradScaler on CUDA, full precision on CPU), ``"none"``, ``"fp16"`` or
            ``"bf16"`` (bf16 autocast; works on CPU too).
        step_size_refresh_interval: Every this many iterations, call ``refresh_step_size(momentum)`` on every
            submodule that has it (the VARS-S step-size refresh); 0 disables it.
        step_size_refresh_momentum: Momentum passed to ``refresh_step_size``.
        num_workers: Data-loading worker processes per training process.
        seed: Seed of every random choice (model init, sampling, augmentation).
        log_interval: Iterations between progress-bar updates.
    """

    epochs: int = 300
    batch_size: int = 1024
    lr: float | None = None
    lr_base: float = 5e-4
    lr_base_batch: int = 512
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    warmup_epochs: float = 5.0
    optimizer: str = "adamw"
    weight_decay: float = 0.05
    clip_grad: float | None = None
    img_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    train_scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    color_jitter: float = 0.4
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    random_erasing: float = 0.25
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    label_smoothing: float = 0.1
    repeated_augmentation: int = 3
    drop_path: float = 0.1
    model_ema: bool = True
    model_ema_decay: float = 0.99996
    amp: str = "auto"
    step_size_refresh_interval: int = 100
    step_size_refresh_momentum: float = 0.1
    num_workers: int = 8
    seed: int = 0
    log_interval: int = 20

    def __post_init__(self) -> None:
        _check_positive_int("epochs", self.epochs)
        _check_positive_int("batch_size", self.batch_size)
        _check_positive_int("lr_base_batch", self.lr_base_batch)
        _check_positive_int("img_size", self.img_size)
        _check_positive_int("log_interval", self.log_interval)
        for name in ("num_workers", "repeated_augmentation", "step_size_refresh_interval", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        for name in ("lr_base", "min_lr", "warmup_lr", "warmup_epochs", "weight_decay", "mixup", "cutmix",
                     "drop_path", "random_erasing", "color_jitter"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        for name in ("hflip", "mixup_prob", "mixup_switch_prob", "label_smoothing", "random_erasing",
                     "drop_path", "step_size_refresh_momentum"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        if not 0.0 <= self.model_ema_decay < 1.0:
            raise ValueError(f"model_ema_decay must lie in [0, 1), got {self.model_ema_decay!r}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must lie in (0, 1], got {self.crop_pct!r}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr must be positive or None, got {self.lr!r}")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise ValueError(f"clip_grad must be positive or None, got {self.clip_grad!r}")
        if self.amp not in _AMP_MODES:
            raise ValueError(f"amp must be one of {_AMP_MODES}, got {self.amp!r}")
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean and std must have the same length, got {len(self.mean)} and {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std!r}")
        low, high = self.train_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"train_scale must satisfy 0 < low <= high <= 1, got {self.train_scale!r}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must not exceed epochs ({self.epochs})")

    @property
    def peak_lr(self) -> float:
        """Peak learning rate: ``lr`` if given, else ``lr_base · batch_size / lr_base_batch``."""
        if self.lr is not None:
            return float(self.lr)
        return self.lr_base * self.batch_size / self.lr_base_batch

    @property
    def uses_mixup(self) -> bool:
        """Whether batches are mixed (Mixup or CutMix), hence trained with soft targets."""
        return (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0

    def replace(self, **changes: Any) -> TrainConfig:
        """Return a copy with ``changes`` applied (validated like a new config).

        Args:
            **changes: Field names and their new values.
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown TrainConfig field(s) {unknown}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-friendly values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def to_json(self) -> str:
        """The config as a canonical JSON string (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output.

        Args:
            values: Field names and values; lists are turned back into tuples where the field is a tuple.
        """
        if not isinstance(values, dict):
            raise TypeError(f"values must be a dict, got {type(values).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TypeError(f"unknown TrainConfig field(s) {unknown}")
        converted = {}
        for key, value in values.items():
            if isinstance(value, list) and "tuple" in str(hints[key]):
                value = tuple(value)
            converted[key] = value
        return cls(**converted)

    @staticmethod
    def parse_field(name: str, text: str) -> Any:
        """Parse a command-line string into the type of field ``name`` (``none`` → ``None``; tuples as ``a,b``).

        Args:
            name: A TrainConfig field name.
            text: The value as typed on the command line.
        """
        hints = typing.get_type_hints(TrainConfig)
        if name not in hints:
            raise ValueError(f"unknown TrainConfig field {name!r}; known: {sorted(hints)}")
        hint = str(hints[name])
        if text.lower() == "none" and "None" in hint:
            return None
        if "tuple" in hint:
            return tuple(float(part) for part in text.split(","))
        if "bool" in hint:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{name} expects a boolean, got {text!r}")
        if "int" in hint and "float" not in hint:
            return int(text)
        if "float" in hint:
            return float(text)
        return text


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


_PRESETS: dict[str, dict[str, Any]] = {
    "imagenet": {},
    # Small images (64×64), a few epochs on two CPU cores: light augmentation, no mixing, no repeats, no EMA.
    "demo": {
        "epochs": 5,
        "batch_size": 64,
        "lr_base": 1e-3,
        "lr_base_batch": 64,
        "min_lr": 1e-5,
        "warmup_lr": 1e-5,
        "warmup_epochs": 1.0,
        "img_size": 64,
        "crop_pct": 1.0,
        "train_scale": (0.5, 1.0),
        "color_jitter": 0.2,
        "auto_augment": None,
        "random_erasing": 0.0,
        "mixup": 0.0,
        "cutmix": 0.0,
        "label_smoothing": 0.1,
        "repeated_augmentation": 0,
        "drop_path": 0.0,
        "model_ema": False,
        "num_workers": 0,
        "log_interval": 5,
    },
    # Fine-tuning an ImageNet-pretrained model on three PACS domains (7 classes).
    "pacs": {
        "epochs": 20,
        "batch_size": 64,
        "lr_base": 1e-4,
        "lr_base_batch": 64,
        "min_lr": 1e-6,
        "warmup_lr": 1e-6,
        "warmup_epochs": 1.0,
        "train_scale": (0.5, 1.0),
        "auto_augment": None,
        "random_erasing": 0.0,
        "mixup": 0.0,
        "cutmix": 0.0,
        "label_smoothing": 0.1,
        "repeated_augmentation": 0,
        "drop_path": 0.1,
        "model_ema": False,
        "num_workers": 4,
    },
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def preset(name: str, **overrides: Any) -> TrainConfig:
    """Return the named recipe (``imagenet``, ``demo`` or ``pacs``) with ``overrides`` applied.

    Args:
        name: Preset name.
        **overrides: TrainConfig fields to change.
    """
    if name not in _PRESETS:
        raise ValueError(f"preset must be one of {PRESET_NAMES}, got {name!r}")
    return TrainConfig().replace(**{**_PRESETS[name], **overrides})
