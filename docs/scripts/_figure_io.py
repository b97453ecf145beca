"""Shared helpers of the figure scripts: where figures go and how they are written (atomically)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

__all__ = ["FIGURE_DIR", "save_figure"]

#: where the committed figures live (``docs/assets/figures``)
FIGURE_DIR = Path(__file__).resolve().parents[1] / "assets" / "figures"


def save_figure(fig: "plt.Figure", path: Path, *, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically (a temporary file in the same folder, then ``os.replace``).

    Args:
        fig: the matplotlib figure (closed afterwards).
        path: the PNG to write; its folder is created if needed.
        dpi: resolution.

    Returns:
        ``path``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        # fixed metadata keeps the bytes reproducible from run to run
        fig.savefig(tmp, dpi=dpi, format="png", metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        plt.close(fig)
    return path
