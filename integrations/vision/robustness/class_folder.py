"""Classification data laid out as ``<root>/<class name>/<image>``, labelled in a fixed class order.

One dataset type serves clean ImageNet ``val/<wnid>``, ImageNet-C leaves
``<corruption>/<severity>/<wnid>``, ImageNet-R / -A / -Sketch ``<wnid>`` and PACS
``<domain>/<class>``. The label of an image is the position of its folder name in ``class_names``
(by default the 1000 sorted ImageNet wnids), so a 200-folder set such as ImageNet-R is labelled in
the 1000-class order, and the folders present give the logit subset to score on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from .image_files import DatasetLayoutError, list_image_files, load_rgb

__all__ = ["ClassFolderDataset"]


class ClassFolderDataset(Dataset):
    """Samples ``(x, y)`` with ``x = transform(RGB image)`` and ``y = class_names.index(folder name)``.

    Args:
        root: The folder holding one sub-folder per class.
        class_names: The label space, in logit order; every sub-folder must be one of them.
        transform: Maps the RGB PIL image to a float tensor (3, H, W) in [0, 1].
        layout: Human description of the expected layout, used in error messages.
        require_all_classes: Also require a folder for every entry of ``class_names``.

    Raises:
        DatasetLayoutError: ``root`` is missing, has no class folders, has a folder that is not a
            class name, or holds no image at all.
    """

    def __init__(
        self,
        root: str | Path,
        class_names: Sequence[str],
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        layout: str = "<root>/<class>/<image>",
        require_all_classes: bool = False,
    ) -> None:
        if isinstance(class_names, str) or len(class_names) == 0:
            raise ValueError(f"class_names must be a non-empty sequence of names, got {class_names!r}")
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.root = Path(root)
        self.class_names = tuple(class_names)
        self.transform = transform
        if not self.root.is_dir():
            raise DatasetLayoutError(f"data folder {self.root} does not exist; expected layout {layout}")
        index_of = {name: i for i, name in enumerate(self.class_names)}
        folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        if not folders:
            raise DatasetLayoutError(f"{self.root} has no class folders; expected layout {layout}")
        unknown = [p.name for p in folders if p.name not in index_of]
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise DatasetLayoutError(
                f"{self.root} has folders that are not class names ({shown}); expected layout {layout} "
                f"with class folders from a list of {len(self.class_names)} names starting {self.class_names[:3]}"
            )
        if require_all_classes and len(folders) != len(self.class_names):
            missing = sorted(set(self.class_names) - {p.name for p in folders})
            raise DatasetLayoutError(
                f"{self.root} lacks {len(missing)} class folders (e.g. {missing[:3]}); expected layout {layout}"
            )
        folders.sort(key=lambda p: index_of[p.name])
        self.samples: list[tuple[Path, int]] = []
        for folder in folders:
            label = index_of[folder.name]
            self.samples.extend((path, label) for path in list_image_files(folder))
        if not self.samples:
            raise DatasetLayoutError(f"{self.root} holds no image files; expected layout {layout}")
        self.present_class_indices: tuple[int, ...] = tuple(index_of[p.name] for p in folders)
        """Indices (into ``class_names``) of the class folders present, ascending."""

    def __len__(self) -> int:
        return len(self.samples)

    def sample_path(self, index: int) -> Path:
        """The file behind sample ``index``.

        Args:
            index: Sample position.

        Returns:
            Its path.
        """
        return self.samples[index][0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return self.transform(load_rgb(path)), label
