"""The trainer on tiny data on the CPU: exact resume, checkpoints, refusals, step-size refresh, demo cache, PACS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset

from integrations.vision.train import main
from integrations.vision.training import (
    DistributedContext,
    Trainer,
    build_transform,
    find_checkpoint,
    finetune_pacs,
    preset,
    read_run_record,
    train_demo,
    train_image_folder,
    write_synthetic_image_folder,
)
from integrations.vision.training.data import image_folder

TINY_VIT = {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}
VIT = "vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_image_folder(tmp_path_factory.mktemp("data"), num_classes=4, per_class=8, size=32)


def _full_recipe(**changes: object):
    """Every random part of the ImageNet recipe switched on, at toy scale."""
    values = dict(img_size=32, batch_size=8, epochs=2, warmup_epochs=0.5, num_workers=0,
                  auto_augment="rand-m9-mstd0.5-inc1", random_erasing=0.25, mixup=0.8, cutmix=1.0,
                  label_smoothing=0.1, drop_path=0.1, model_ema=True, model_ema_decay=0.9, repeated_augmentation=0)
    values.update(changes)
    return preset("demo", **values)


def test_interrupted_and_resumed_run_repeats_the_uninterrupted_losses(data_root: Path, tmp_path: Path) -> None:
    config = _full_recipe()
    straight = train_image_folder(VIT, data_root, tmp_path / "straight", config, model_kwargs=TINY_VIT,
                                  progress=False)
    first = train_image_folder(VIT, data_root, tmp_path / "split", config, model_kwargs=TINY_VIT, progress=False,
                               max_epochs=1)
    assert len(first.step_losses) == 1
    second = train_image_folder(VIT, data_root, tmp_path / "split", config, model_kwargs=TINY_VIT, progress=False,
                                resume=tmp_path / "split")
    assert len(straight.step_losses) == 2 and len(second.step_losses) == 1
    np.testing.assert_allclose(first.step_losses[0], straight.step_losses[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(second.step_losses[0], straight.step_losses[1], rtol=0, atol=1e-6)
    for key in ("val_loss", "val_acc1", "ema_val_loss"):
        assert second.history[-1][key] == pytest.approx(straight.history[-1][key], abs=1e-6)
    assert [r["epoch"] for r in second.history] == [1, 2]
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[name], value, rtol=0, atol=1e-6)


def test_checkpoint_files_are_complete_and_load_weights_only(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_image_folder(VIT, data_root, out, _full_recipe(), model_kwargs=TINY_VIT, progress=False)
    files = find_checkpoint(out)
    assert files is not None and files.folder.name == "epoch-0002"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0002", "latest.json"]
    record = read_run_record(files)
    assert record["model_name"] == VIT and record["finished"] and record["epoch"] == 2
    assert record["config"]["batch_size"] == 8 and record["model_kwargs"] == TINY_VIT
    assert len(record["data_manifest"]) == 64
    state = torch.load(files.state, map_location="cpu", weights_only=True)
    assert {"optimizer", "scheduler", "ema", "scaler", "rng", "sampler_epoch", "num_updates"} <= set(state)
    assert state["sampler_epoch"] == 2 and state["num_updates"] == 2 * (32 // 8)
    assert {"torch", "numpy", "python", "cuda"} <= set(state["rng"][0])
    weights = load_file(str(files.model))
    assert "head.weight" in weights and weights["head.weight"].shape == (4, 32)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert (out / "training_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_out_dir_of_another_run_is_refused_and_left_intact(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = _full_recipe(epochs=1, warmup_epochs=0.0)
    train_image_folder(VIT, data_root, out, config, model_kwargs=TINY_VIT, progress=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="different run's checkpoint"):
        train_image_folder(VIT, data_root, out, config.replace(seed=1), model_kwargs=TINY_VIT, progress=False)
    with pytest.raises(ValueError, match="already holds a checkpoint of this run"):
        train_image_folder(VIT, data_root, out, config, model_kwargs=TINY_VIT, progress=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    rerun = train_image_folder(VIT, data_root, out, config.replace(seed=1), model_kwargs=TINY_VIT, progress=False,
                               overwrite=True)
    assert read_run_record(find_checkpoint(out))["config"]["seed"] == 1 and len(rerun.history) == 1


def test_resume_from_a_different_model_names_both(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = _full_recipe(epochs=2, warmup_epochs=0.0)
    train_image_folder(VIT, data_root, out, config, model_kwargs=TINY_VIT, progress=False, max_epochs=1)
    with pytest.raises(ValueError, match=f"'{VIT}'.*'vit_small_patch16_224'"):
        train_image_folder("vit_small_patch16_224", data_root, out, config, model_kwargs=TINY_VIT, progress=False,
                           resume=out)
    with pytest.raises(ValueError, match="holds no checkpoint"):
        train_image_folder(VIT, data_root, tmp_path / "other", config, model_kwargs=TINY_VIT, progress=False,
                           resume=tmp_path / "nothing")


def test_data_folder_without_class_folders_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "train" / "loose.png").write_bytes(b"")
    with pytest.raises(ValueError, match="no class sub-folders"):
        train_image_folder(VIT, tmp_path / "data", tmp_path / "out", _full_recipe(), progress=False)
    with pytest.raises(ValueError, match="data_root must be an existing folder"):
        main(["--model", VIT, "--data-root", str(tmp_path / "missing"), "--preset", "demo", "--device", "cpu"])
    assert not (tmp_path / "out").exists()


def test_batch_not_divisible_across_processes_is_refused(data_root: Path) -> None:
    dataset = image_folder(data_root / "train", build_transform(_full_recipe(), True))
    two_processes = DistributedContext(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"), backend=None)
    with pytest.raises(ValueError, match="batch_size 9 is not divisible by the number of processes 2"):
        Trainer(nn.Linear(2, 2), "linear", _full_recipe(batch_size=9), dataset, context=two_processes)


class _CountingRefresh(nn.Module):
    """A classifier with a module exposing the VARS-S ``refresh_step_size`` contract."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 4)
        self.calls: list[float] = []

    def refresh_step_size(self, momentum: float) -> None:
        self.calls.append(momentum)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(images.mean(dim=(2, 3)))


def test_trainer_refreshes_step_sizes_every_interval_without_ddp(data_root: Path) -> None:
    config = preset("demo", img_size=32, batch_size=4, epochs=2, warmup_epochs=0.0, step_size_refresh_interval=3)
    model = _CountingRefresh()
    dataset = image_folder(data_root / "train", build_transform(config, True))
    Trainer(model, "counting", config, dataset, progress=False).fit()
    steps = 2 * (32 // 4)
    assert model.calls == [0.1] * len(range(0, steps, 3))


def test_train_demo_caches_a_finished_run(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_synthetic_image_folder(tmp_path / "demo_data", num_classes=4, per_class=16, size=16)
    out = tmp_path / "demo"
    kwargs = dict(epochs=2, img_size=16, progress=False, patch_size=8, depth=1, embed_dim=16, num_heads=2)
    trained = train_demo(VIT, data, out, **kwargs)
    assert not trained.training
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and "val_acc1" in records[0]
    assert (out / "training_curve.png").is_file()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached demo run must not train again")

    monkeypatch.setattr("integrations.vision.training.demo.train_image_folder", no_training)
    cached = train_demo(VIT, data, out, **kwargs)
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(cached.state_dict()[name], value)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="different run's checkpoint"):
        train_demo(VIT, data, out, **{**kwargs, "epochs": 1})


def _write_pacs(root: Path, scratch: Path, classes: int = 3, per_class: int = 4) -> Path:
    root.mkdir(parents=True)
    for index, domain in enumerate(("photo", "art_painting", "cartoon", "sketch")):
        write_synthetic_image_folder(scratch / domain, num_classes=classes, per_class=per_class, size=16,
                                     seed=index, splits=("images",))
        (scratch / domain / "images").rename(root / domain)
    return root


def test_pacs_mode_trains_on_three_domains_and_tests_on_the_fourth(tmp_path: Path) -> None:
    pacs = _write_pacs(tmp_path / "PACS", tmp_path / "scratch")
    result = main(["--model", VIT, "--data-root", str(pacs), "--preset", "pacs", "--pacs-target", "sketch",
                   "--img-size", "16", "--batch-size", "12", "--epochs", "1", "--num-workers", "0", "--no-progress",
                   "--device", "cpu", "--out-dir", str(tmp_path / "run"),
                   "--model-kwargs", json.dumps({**TINY_VIT, "embed_dim": 16})])
    assert len(result.history) == 1 and 0.0 <= result.history[0]["val_acc1"] <= 100.0
    record = read_run_record(find_checkpoint(tmp_path / "run"))
    assert record["classes"] == ["class_0", "class_1", "class_2"] and record["data_manifest"].startswith("pacs:sketch")
    with pytest.raises(ValueError, match="pacs target must be one of the domain folders"):
        main(["--model", VIT, "--data-root", str(pacs), "--preset", "pacs", "--pacs-target", "clipart"])


class _RawImages(Dataset):
    """(uint8 CHW tensor, label) pairs, the raw form a benchmark runner may hand over."""

    def __init__(self, count: int, classes: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (count, 3, 20, 20), dtype=torch.uint8, generator=generator)
        self.targets = [i % classes for i in range(count)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


def test_finetune_pacs_resets_the_head_and_trains() -> None:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(VIT, img_size=16, num_classes=10, **{**TINY_VIT, "embed_dim": 16})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = preset("pacs", img_size=16, batch_size=8, epochs=1, warmup_epochs=0.0, num_workers=0)
    tuned = finetune_pacs(model, [_RawImages(8, 3, 0), _RawImages(8, 3, 1), _RawImages(8, 3, 2)], config,
                          val_dataset=_RawImages(6, 3, 3), progress=False)
    assert tuned.num_classes == 3 and tuned.head.weight.shape == (3, 16) and not tuned.training
    assert not torch.equal(tuned.state_dict()["blocks.0.attn.qkv.weight"], before["blocks.0.attn.qkv.weight"])
    with pytest.raises(TypeError, match="source_datasets"):
        finetune_pacs(model, _RawImages(4, 3, 0), config)  # type: ignore[arg-type]


def test_bf16_autocast_clipping_and_repeated_augmentation_run(data_root: Path, tmp_path: Path) -> None:
    config = _full_recipe(epochs=1, warmup_epochs=0.0, amp="bf16", clip_grad=1.0, repeated_augmentation=3)
    result = train_image_folder(VIT, data_root, None, config, model_kwargs=TINY_VIT, progress=False)
    assert len(result.step_losses[0]) == 32 // 8 and all(np.isfinite(result.step_losses[0]))
    assert result.ema_model is not None and result.checkpoint is None


class _Labelled(Dataset):
    def __init__(self, **attributes: object) -> None:
        self.__dict__.update(attributes)

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.zeros(3, 4, 4), 0


def test_number_of_classes_is_read_from_common_dataset_attributes() -> None:
    from torch.utils.data import ConcatDataset

    from integrations.vision.training.data import dataset_num_classes

    assert dataset_num_classes(_Labelled(classes=["a", "b", "c"])) == 3
    assert dataset_num_classes(_Labelled(class_names=("a", "b"))) == 2
    assert dataset_num_classes(_Labelled(targets=[0, 4, 1])) == 5
    assert dataset_num_classes(_Labelled(samples=[("x.png", 6)])) == 7
    assert dataset_num_classes(ConcatDataset([_Labelled(targets=[1]), _Labelled(targets=[2])])) == 3
    with pytest.raises(ValueError, match="number of classes"):
        dataset_num_classes(_Labelled())


def test_command_line_reports_bad_input_with_exit_status_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "data" / "train").mkdir(parents=True)
    completed = subprocess.run(
        [sys.executable, "-m", "integrations.vision.train", "--model", VIT, "--data-root", str(tmp_path / "data"),
         "--preset", "demo", "--device", "cpu", "--out-dir", str(tmp_path / "out")],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2 and "no class sub-folders" in completed.stderr
    assert not (tmp_path / "out").exists()


def test_command_line_interrupt_then_resume_finishes_the_run(data_root: Path, tmp_path: Path) -> None:
    common = ["--model", VIT, "--data-root", str(data_root), "--preset", "demo", "--img-size", "32", "--epochs", "2",
              "--batch-size", "8", "--device", "cpu", "--no-progress", "--model-kwargs", json.dumps(TINY_VIT)]
    first = main([*common, "--out-dir", str(tmp_path / "run"), "--max-epochs-this-run", "1"])
    assert [r["epoch"] for r in first.history] == [1]
    assert not read_run_record(find_checkpoint(tmp_path / "run"))["finished"]
    second = main([*common, "--resume", str(tmp_path / "run")])
    assert [r["epoch"] for r in second.history] == [1, 2]
    assert read_run_record(find_checkpoint(tmp_path / "run"))["finished"]
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_resume_with_more_epochs_extends_a_finished_run(data_root: Path, tmp_path: Path) -> None:
    config = _full_recipe(epochs=1, warmup_epochs=0.0, model_ema=False, mixup=0.0, cutmix=0.0)
    train_image_folder(VIT, data_root, tmp_path / "run", config, model_kwargs=TINY_VIT, progress=False)
    longer = train_image_folder(VIT, data_root, tmp_path / "run", config.replace(epochs=3), model_kwargs=TINY_VIT,
                                progress=False, resume=tmp_path / "run")
    assert [r["epoch"] for r in longer.history] == [1, 2, 3] and len(longer.step_losses) == 2
    record = read_run_record(find_checkpoint(tmp_path / "run"))
    assert record["finished"] and record["epoch"] == 3 and record["num_updates"] == 3 * (32 // 8)


def test_command_line_compile_trains_through_torch_compile(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[nn.Module] = []

    def record(module: nn.Module, *args: object, **kwargs: object) -> nn.Module:
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", record)
    common = ["--model", VIT, "--data-root", str(data_root), "--preset", "demo", "--img-size", "32", "--epochs", "1",
              "--batch-size", "8", "--device", "cpu", "--no-progress", "--model-kwargs", json.dumps(TINY_VIT)]
    main(common)
    assert compiled == []
    result = main([*common, "--compile"])
    assert compiled == [result.model] and len(result.step_losses) == 1


def test_trainer_rejects_a_non_bool_compile_model(data_root: Path) -> None:
    config = preset("demo", img_size=32, batch_size=4, epochs=1, warmup_epochs=0.0)
    dataset = image_folder(data_root / "train", build_transform(config, True))
    with pytest.raises(TypeError, match="compile_model must be a bool"):
        Trainer(_CountingRefresh(), "counting", config, dataset, compile_model="yes")


@pytest.mark.slow
@pytest.mark.parametrize("model_name, model_kwargs", [
    (VIT, TINY_VIT),
    ("deit_vars_d", {"patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}),
])
def test_compiled_training_repeats_the_eager_losses(data_root: Path, model_name: str,
                                                    model_kwargs: dict[str, int]) -> None:
    # no randomness inside the model (drop-path): compiled random ops draw other numbers than eager ones
    config = _full_recipe(epochs=1, warmup_epochs=0.0, drop_path=0.0, model_ema=False)
    eager = train_image_folder(model_name, data_root, None, config, model_kwargs=model_kwargs, progress=False)
    compiled = train_image_folder(model_name, data_root, None, config, model_kwargs=model_kwargs, progress=False,
                                  compile_model=True)
    np.testing.assert_allclose(compiled.step_losses[0], eager.step_losses[0], rtol=1e-4, atol=1e-5)
    for name, value in eager.model.state_dict().items():
        torch.testing.assert_close(compiled.model.state_dict()[name], value, rtol=1e-3, atol=1e-4)
