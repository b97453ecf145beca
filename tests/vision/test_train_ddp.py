"""Two gloo processes under torchrun reproduce the single-process run with the same global batch.

The model is a timm ViT: LayerNorm, no BatchNorm, dropout and drop-path 0, so each step's loss is a mean over the
global batch whichever way it is split; augmentation is reduced to the (deterministic) resize so that both runs see
the same pixels. Tolerance: 1e-5 on every per-step loss and on the validation numbers (float32 sums in another order).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from integrations.vision.training import write_synthetic_image_folder

ARGS = [
    "--model", "vit_tiny_patch16_224", "--preset", "demo", "--img-size", "32", "--epochs", "2", "--batch-size", "16",
    "--num-workers", "0", "--device", "cpu", "--no-progress", "--set", "hflip=0", "--set", "color_jitter=0",
    "--set", "train_scale=1,1", "--set", "label_smoothing=0.1",
    "--model-kwargs", json.dumps({"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}),
]


def _run(command: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    data = write_synthetic_image_folder(tmp_path / "data", num_classes=4, per_class=8, size=32)
    repo = Path(__file__).resolve().parents[2]
    common = ARGS + ["--data-root", str(data)]
    _run([sys.executable, "-m", "integrations.vision.train", *common, "--out-dir", str(tmp_path / "one")], repo)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
          "-m", "integrations.vision.train", *common, "--out-dir", str(tmp_path / "two")], repo)
    one, two = _read(tmp_path / "one" / "step_losses.jsonl"), _read(tmp_path / "two" / "step_losses.jsonl")
    assert [len(r["losses"]) for r in one] == [2, 2] == [len(r["losses"]) for r in two]
    for a, b in zip(one, two):
        np.testing.assert_allclose(b["losses"], a["losses"], rtol=0, atol=1e-5)
    metrics_one, metrics_two = _read(tmp_path / "one" / "metrics.jsonl"), _read(tmp_path / "two" / "metrics.jsonl")
    for a, b in zip(metrics_one, metrics_two):
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-5)
        assert b["val_acc1"] == pytest.approx(a["val_acc1"], abs=1e-6)
    run_two = json.loads(next((tmp_path / "two" / "checkpoints").glob("epoch-*/run.json")).read_text())
    assert run_two["world_size"] == 2 and run_two["finished"]
