"""TrainConfig presets, validation, serialisation and the command-line overrides."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from integrations.vision.train import build_parser, config_from_args
from integrations.vision.training import (
    TrainConfig,
    per_process_batch_size,
    preset,
    refresh_step_sizes,
    unwrap_model,
)


def test_imagenet_preset_is_the_deit_vars_recipe() -> None:
    config = preset("imagenet")
    assert config.optimizer == "adamw" and config.weight_decay == 0.05
    assert config.epochs == 300 and config.warmup_epochs == 5
    assert config.auto_augment == "rand-m9-mstd0.5-inc1" and config.random_erasing == 0.25
    assert config.interpolation == "bicubic"
    assert (config.mixup, config.cutmix, config.label_smoothing) == (0.8, 1.0, 0.1)
    assert config.drop_path == 0.1 and config.model_ema and config.repeated_augmentation == 3
    assert config.step_size_refresh_interval == 100 and config.step_size_refresh_momentum == 0.1
    assert config.peak_lr == pytest.approx(5e-4 * config.batch_size / 512)


def test_demo_and_pacs_presets_are_light() -> None:
    demo = preset("demo")
    assert demo.img_size == 64 and demo.batch_size == 64 and demo.repeated_augmentation == 0
    assert not demo.uses_mixup and demo.auto_augment is None and not demo.model_ema
    pacs = preset("pacs")
    assert pacs.epochs < preset("imagenet").epochs and not pacs.uses_mixup


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 4096), base=st.floats(1e-6, 1e-2), ref=st.integers(1, 1024))
def test_learning_rate_scales_with_the_global_batch(batch: int, base: float, ref: int) -> None:
    config = preset("demo", batch_size=batch, lr_base=base, lr_base_batch=ref)
    assert config.peak_lr == pytest.approx(base * batch / ref)
    assert config.replace(lr=0.123).peak_lr == 0.123


@settings(max_examples=20, deadline=None)
@given(epochs=st.integers(1, 500), seed=st.integers(0, 2**31), low=st.floats(0.01, 1.0))
def test_config_round_trips_through_dict(epochs: int, seed: int, low: float) -> None:
    config = preset("imagenet", epochs=epochs, seed=seed, warmup_epochs=0.0, train_scale=(low, 1.0))
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [("epochs", 0, "epochs"), ("batch_size", -4, "batch_size"), ("amp", "fp8", "amp"), ("hflip", 1.5, "hflip"),
     ("train_scale", (0.9, 0.2), "train_scale"), ("lr", -1.0, "lr"), ("model_ema_decay", 1.0, "model_ema_decay"),
     ("warmup_epochs", 400.0, "warmup_epochs"), ("std", (0.0, 1.0, 1.0), "std")],
)
def test_bad_config_values_name_the_field(field: str, value: object, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        preset("imagenet", **{field: value})


def test_unknown_preset_and_field_are_rejected() -> None:
    with pytest.raises(ValueError, match="preset"):
        preset("cifar")
    with pytest.raises(TypeError, match="no_such_field"):
        preset("demo").replace(no_such_field=1)


def test_batch_size_must_split_evenly_across_processes() -> None:
    assert per_process_batch_size(1024, 8) == 128
    with pytest.raises(ValueError, match="batch_size 10 is not divisible by the number of processes 4"):
        per_process_batch_size(10, 4)


def test_command_line_overrides() -> None:
    args = build_parser().parse_args([
        "--model", "deit", "--data-root", "x", "--preset", "demo", "--epochs", "3", "--batch-size", "32",
        "--step-size-refresh-interval", "7", "--set", "mixup=0.5", "--set", "model_ema=true", "--set", "lr=none",
        "--set", "train_scale=0.3,1.0", "--set", "auto_augment=rand-m9-mstd0.5",
    ])
    config = config_from_args(args)
    assert (config.epochs, config.batch_size, config.step_size_refresh_interval) == (3, 32, 7)
    assert config.mixup == 0.5 and config.model_ema and config.lr is None
    assert config.train_scale == (0.3, 1.0) and config.auto_augment == "rand-m9-mstd0.5"
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.parse_field("nope", "1")


class _Refreshable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.calls: list[float] = []

    def refresh_step_size(self, momentum: float) -> None:
        self.calls.append(momentum)


def test_step_size_refresh_reaches_every_module_wrapped_or_not() -> None:
    model = nn.Sequential(_Refreshable(), nn.ReLU(), nn.Sequential(_Refreshable()))
    assert refresh_step_sizes(model, 0.1) == 2
    assert model[0].calls == [0.1] and model[2][0].calls == [0.1]
    wrapped = nn.DataParallel(model)
    assert unwrap_model(wrapped) is model
    assert refresh_step_sizes(wrapped, 0.2) == 2 and model[0].calls == [0.1, 0.2]
    with pytest.raises(ValueError, match="momentum"):
        refresh_step_sizes(model, 2.0)
    with pytest.raises(TypeError, match="model"):
        refresh_step_sizes(torch.zeros(1), 0.1)  # type: ignore[arg-type]
