"""Checkpoints: safe loading of original files, key conversion, safetensors + JSON round trip."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from integrations.vision import (
    convert_original_state_dict,
    create_model,
    load_checkpoint,
    load_original_checkpoint,
    save_checkpoint,
)
from integrations.vision.checkpoints import config_path


class _ArbitraryClass:
    """A class that is not on the allow-list; unpickling it must be refused."""

    def __init__(self) -> None:
        self.payload = 1


def _original_rvt_state_dict(model_name: str) -> dict[str, torch.Tensor]:
    """A state dict with the original key names, made by renaming ours back (stages → transformers)."""
    model = create_model(model_name, num_classes=4, img_size=64)
    return {k.replace("stages.", "transformers.", 1): v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["deit_perf", "rvt", "gfnet"])
def test_round_trip_restores_identical_outputs(tmp_path: Path, name: str) -> None:
    config = {"name": name, "num_classes": 7, "img_size": 32 if name != "rvt" else 64}
    model = create_model(name, num_classes=7, img_size=config["img_size"])
    model.train()
    model(torch.randn(4, 3, config["img_size"], config["img_size"]))  # move BatchNorm running statistics
    model.eval()
    path = tmp_path / "weights.safetensors"
    save_checkpoint(model, path, config)
    assert json.loads(config_path(path).read_text()) == config
    restored = load_checkpoint(path)
    assert not restored.training
    images = torch.randn(2, 3, config["img_size"], config["img_size"])
    with torch.no_grad():
        assert torch.equal(model(images), restored(images))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.json", "weights.safetensors"]


def test_save_checkpoint_rejects_a_config_that_does_not_describe_the_model(tmp_path: Path) -> None:
    model = create_model("deit", num_classes=7, img_size=32)
    with pytest.raises(ValueError, match="does not describe this model"):
        save_checkpoint(model, tmp_path / "w.safetensors", {"name": "deit", "num_classes": 3, "img_size": 32})
    with pytest.raises(ValueError, match="'name'"):
        save_checkpoint(model, tmp_path / "w.safetensors", {"num_classes": 7})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(model, tmp_path / "w.safetensors", {"name": "deit", "img_size": object()})
    assert list(tmp_path.iterdir()) == []


def test_load_checkpoint_needs_the_config(tmp_path: Path) -> None:
    model = create_model("deit", num_classes=2, img_size=32)
    path = tmp_path / "w.safetensors"
    save_checkpoint(model, path, {"name": "deit", "num_classes": 2, "img_size": 32})
    config_path(path).unlink()
    with pytest.raises(FileNotFoundError, match="w.json"):
        load_checkpoint(path)


def test_original_loader_accepts_namespace_args(tmp_path: Path) -> None:
    state = _original_rvt_state_dict("rvt_perf")
    args = argparse.Namespace(model="rvt_tiny", lr=5e-4, attention="perf")
    path = tmp_path / "original.pth"
    torch.save({"model": state, "args": args, "epoch": 299}, path)
    checkpoint = load_original_checkpoint(path)
    assert checkpoint["args"] == args and checkpoint["epoch"] == 299
    converted = convert_original_state_dict(checkpoint["model"], "rvt_perf", num_classes=4, img_size=64)
    model = create_model("rvt_perf", num_classes=4, img_size=64)
    model.load_state_dict(converted)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in converted.items())


def test_original_loader_rejects_other_pickled_classes(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "args": _ArbitraryClass()}, path)
    with pytest.raises(ValueError, match="not a safe original checkpoint"):
        load_original_checkpoint(path)


def test_original_loader_bare_state_dict_and_bad_files(tmp_path: Path) -> None:
    bare = tmp_path / "bare.pth"
    torch.save({"head.weight": torch.ones(2, 2)}, bare)
    assert set(load_original_checkpoint(bare)["model"]) == {"head.weight"}
    no_model = tmp_path / "nomodel.pth"
    torch.save({"optimizer": {"lr": 1.0}}, no_model)
    with pytest.raises(ValueError, match="'model'"):
        load_original_checkpoint(no_model)
    with pytest.raises(FileNotFoundError):
        load_original_checkpoint(tmp_path / "missing.pth")


def test_convert_strips_ddp_prefix_and_reports_mismatches() -> None:
    state = {f"module.{k}": v for k, v in _original_rvt_state_dict("rvt").items()}
    converted = convert_original_state_dict(state, "rvt", num_classes=4, img_size=64)
    assert all(not k.startswith(("module.", "transformers.")) for k in converted)
    state["module.head.weight"] = torch.zeros(5, 384)
    with pytest.raises(ValueError, match=r"head.weight: \(5, 384\) vs ours \(4, 384\)"):
        convert_original_state_dict(state, "rvt", num_classes=4, img_size=64)
    with pytest.raises(ValueError, match="missing .*attn.rand_matrix"):
        convert_original_state_dict(_original_rvt_state_dict("rvt"), "rvt_perf", num_classes=4, img_size=64)
    with pytest.raises(ValueError, match="only for the families"):
        convert_original_state_dict({}, "deit")
    with pytest.raises(ValueError, match="valid names"):
        convert_original_state_dict({}, "rvt_nonexistent")
