"""Where each data set lives: standard folder names under one ``--data-root``, or explicit paths.

Standard names under the root (first existing candidate wins):

============== ====================================== ==========================================
data set       folder(s) tried                        layout inside
============== ====================================== ==========================================
imagenet_val   ``imagenet/val``, ``val``              ``<class>/<image>``
imagenet_c     ``imagenet-c``                         ``<corruption>/<1..5>/<class>/<image>``
imagenet_r     ``imagenet-r``                         ``<class>/<image>`` (200 ImageNet classes)
imagenet_a     ``imagenet-a``                         ``<class>/<image>`` (200 ImageNet classes)
imagenet_sketch ``imagenet-sketch``                   ``<class>/<image>``
pacs           ``PACS``                               ``<domain>/<class>/<image>``
voc            ``VOCdevkit/VOC2012``                  ``JPEGImages``, ``SegmentationClass``, ``ImageSets``
mit1003        ``MIT1003``                            ``ALLSTIMULI``, ``ALLFIXATIONMAPS``
============== ====================================== ==========================================
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from .image_files import DatasetLayoutError

__all__ = ["DATASET_FOLDERS", "DATASET_LAYOUTS", "DataRoot", "add_data_arguments", "data_root_from_args"]

DATASET_FOLDERS: dict[str, tuple[str, ...]] = {
    "imagenet_val": ("imagenet/val", "val"),
    "imagenet_c": ("imagenet-c",),
    "imagenet_r": ("imagenet-r",),
    "imagenet_a": ("imagenet-a",),
    "imagenet_sketch": ("imagenet-sketch",),
    "pacs": ("PACS",),
    "voc": ("VOCdevkit/VOC2012",),
    "mit1003": ("MIT1003",),
}
"""Data-set key → standard folder names relative to the data root, in order of preference."""

DATASET_LAYOUTS: dict[str, str] = {
    "imagenet_val": "<val>/<wnid or class>/<image>",
    "imagenet_c": "<imagenet-c>/<corruption>/<severity 1..5>/<wnid or class>/<image>",
    "imagenet_r": "<imagenet-r>/<wnid or class>/<image>",
    "imagenet_a": "<imagenet-a>/<wnid or class>/<image>",
    "imagenet_sketch": "<imagenet-sketch>/<wnid or class>/<image>",
    "pacs": "<PACS>/<photo|art_painting|cartoon|sketch>/<class>/<image>",
    "voc": "<VOC2012>/JPEGImages/<id>.jpg, SegmentationClass/<id>.png, ImageSets/Segmentation/val.txt",
    "mit1003": "<MIT1003>/ALLSTIMULI/<name>.jpeg, ALLFIXATIONMAPS/<name>_fixPts.jpg",
}
"""Data-set key → human description of the expected layout (used in error messages)."""


class DataRoot:
    """Resolves a data-set key to a folder: an explicit path if given, else the first standard folder found.

    Args:
        root: The data root holding the standard folders (None when every path is explicit).
        paths: Optional data-set key → explicit folder (e.g. ``{"imagenet_c": "/data/IN-C"}``).
    """

    def __init__(self, root: str | Path | None = None, paths: Mapping[str, str | Path] | None = None) -> None:
        explicit = dict(paths or {})
        unknown = sorted(set(explicit) - set(DATASET_FOLDERS))
        if unknown:
            raise ValueError(f"paths has unknown data-set keys {unknown}; expected keys from {sorted(DATASET_FOLDERS)}")
        if root is None and not explicit:
            raise ValueError("DataRoot needs a root folder or at least one explicit path, got neither")
        self.root = None if root is None else Path(root)
        self.paths = {key: Path(value) for key, value in explicit.items()}

    def resolve(self, key: str) -> Path:
        """The folder of data set ``key``.

        Args:
            key: A key of :data:`DATASET_FOLDERS`.

        Returns:
            The existing folder.

        Raises:
            DatasetLayoutError: Nothing exists where the data set was expected (the message lists the
                places tried and the layout).
        """
        if key not in DATASET_FOLDERS:
            raise ValueError(f"unknown data-set key {key!r}; expected one of {sorted(DATASET_FOLDERS)}")
        if key in self.paths:
            tried = [self.paths[key]]
        elif self.root is not None:
            tried = [self.root / name for name in DATASET_FOLDERS[key]]
        else:
            tried = []
        for candidate in tried:
            if candidate.is_dir():
                return candidate
        where = ", ".join(str(p) for p in tried) if tried else "(no data root and no explicit path)"
        raise DatasetLayoutError(
            f"data set {key!r} not found; looked in {where}; expected layout {DATASET_LAYOUTS[key]}"
        )

    def __repr__(self) -> str:
        return f"DataRoot(root={self.root!s}, paths={ {k: str(v) for k, v in self.paths.items()} })"


def add_data_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--data-root`` and one ``--<data-set>`` path option per data set (e.g. ``--imagenet-c``).

    Args:
        parser: The command-line parser of the caller.

    Returns:
        The same parser.
    """
    group = parser.add_argument_group("robustness data")
    group.add_argument("--data-root", type=Path, default=None, help="folder holding the standard data-set folders")
    for key, layout in DATASET_LAYOUTS.items():
        group.add_argument(
            f"--{key.replace('_', '-')}", dest=f"data_{key}", type=Path, default=None, help=f"explicit folder: {layout}"
        )
    return parser


def data_root_from_args(args: argparse.Namespace) -> DataRoot:
    """The :class:`DataRoot` described by options added with :func:`add_data_arguments`.

    Args:
        args: The parsed namespace.

    Returns:
        The data root.
    """
    paths = {key: getattr(args, f"data_{key}") for key in DATASET_FOLDERS if getattr(args, f"data_{key}", None)}
    return DataRoot(getattr(args, "data_root", None), paths)
