"""Training logs: JSON-lines metrics and a PNG training curve, both written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_text

__all__ = ["plot_training_curve", "read_jsonl", "write_jsonl"]


def write_jsonl(path: Path | str, records: Sequence[dict[str, Any]]) -> None:
    """Write ``records`` as JSON lines (one object per line), atomically.

    Args:
        path: Destination file.
        records: JSON-serialisable dictionaries.
    """
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Read a JSON-lines file (empty list when it does not exist).

    Args:
        path: File written by :func:`write_jsonl`.
    """
    file = Path(path)
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_training_curve(records: Sequence[dict[str, Any]], path: Path | str, title: str = "") -> None:
    """Plot training / validation loss (left) and validation top-1 accuracy (right) against epoch, as a PNG.

    Args:
        records: Per-epoch records with ``epoch``, ``train_loss`` and optionally ``val_loss``, ``val_acc1``,
            ``ema_val_acc1``.
        path: Destination PNG (written to a temporary file, then ``os.replace``).
        title: Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss_axis.plot(epochs, [r["train_loss"] for r in records], marker="o", label="train")
    if any("val_loss" in r for r in records):
        loss_axis.plot(epochs, [r.get("val_loss", float("nan")) for r in records], marker="o", label="val")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss")
    loss_axis.legend()
    for key, label in (("val_acc1", "val top-1"), ("ema_val_acc1", "EMA val top-1")):
        if any(key in r for r in records):
            acc_axis.plot(epochs, [r.get(key, float("nan")) for r in records], marker="o", label=label)
    acc_axis.set_xlabel("epoch")
    acc_axis.set_ylabel("accuracy (%)")
    if acc_axis.lines:
        acc_axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".png", dir=target.parent)
    os.close(handle)
    try:
        figure.savefig(temp, dpi=100)
        os.replace(temp, target)
    finally:
        plt.close(figure)
        if os.path.exists(temp):
            os.unlink(temp)
