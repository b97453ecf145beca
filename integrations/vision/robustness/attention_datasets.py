"""Data for scoring attention maps: PASCAL VOC 2012 foreground masks and MIT1003 eye fixations.

Each sample is ``(x, target)``: ``x`` is the preprocessed image (3, c, c) in [0, 1] the model sees,
and ``target`` is the ground truth at the ORIGINAL resolution restricted to the region the model
sees (:meth:`Preprocessing.crop_box_in_original`), so that the attention map is resized to the
ground truth, never the other way round.

Layouts (documented assumptions):

* VOC: ``<VOC2012>/ImageSets/Segmentation/<split>.txt`` lists image ids; the image is
  ``JPEGImages/<id>.jpg`` and the mask ``SegmentationClass/<id>.png`` (or ``SegmentationObject``),
  a palette PNG whose indices are 0 = background, 255 = void, anything else = an object.
* MIT1003 (Judd et al., 2009, as distributed): stimuli ``ALLSTIMULI/<name>.jpeg`` and, for each,
  ``ALLFIXATIONMAPS/<name>_fixPts.jpg`` (fixated pixels white on black; being a JPEG it is
  thresholded at grey level > 127) and ``ALLFIXATIONMAPS/<name>_fixMap.jpg`` (the blurred map, not
  needed for NSS). Any image extension PIL reads is accepted for the stimuli.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .image_files import CorruptImageError, DatasetLayoutError, is_image_file, list_image_files, load_array, load_rgb
from .preprocessing import Preprocessing

__all__ = ["VOC_LAYOUT", "MIT1003_LAYOUT", "VOCForegroundDataset", "MIT1003FixationDataset"]

VOC_LAYOUT = (
    "<VOC2012>/JPEGImages/<id>.jpg, <VOC2012>/SegmentationClass/<id>.png (or SegmentationObject/), "
    "<VOC2012>/ImageSets/Segmentation/<split>.txt"
)
MIT1003_LAYOUT = "<MIT1003>/ALLSTIMULI/<name>.jpeg and <MIT1003>/ALLFIXATIONMAPS/<name>_fixPts.jpg"


def _find_with_any_extension(folder: Path, stem: str) -> Path | None:
    for candidate in sorted(folder.glob(f"{stem}.*")):
        if is_image_file(candidate):
            return candidate
    return None


class _ImageWithMap(Dataset):
    """Shared part of the datasets whose samples pair an image with a pixel map at its original resolution:
    ``self.samples`` holds ``(image path, map path)``; the map is cropped to the region the model sees."""

    samples: list[tuple[Path, Path]]
    preprocessing: Preprocessing

    def __len__(self) -> int:
        return len(self.samples)

    def sample_path(self, index: int) -> Path:
        """The image file behind sample ``index``.

        Args:
            index: Sample position.

        Returns:
            Its path.
        """
        return self.samples[index][0]

    def _view(self, image, pixel_map: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The preprocessed image and ``pixel_map`` cropped to the same region of the original image."""
        box = self.preprocessing.crop_box_in_original(image.height, image.width)
        cropped = pixel_map[box.top : box.top + box.height, box.left : box.left + box.width]
        return self.preprocessing(image), torch.from_numpy(np.array(cropped, copy=True))


class VOCForegroundDataset(_ImageWithMap):
    """Samples ``(x, m)``: the preprocessed image and its mask ``m`` (uint8, 0 bg, 255 void, else object).

    ``m`` is the original-resolution mask cropped to the region the model sees.

    Args:
        root: The ``VOC2012`` folder.
        preprocessing: The image policy (resize/crop).
        split: The image-set name under ``ImageSets/Segmentation`` (``val`` in the protocol).
        mask_folder: ``"SegmentationClass"``, ``"SegmentationObject"``, or None to use the first present.

    Raises:
        DatasetLayoutError: A folder or the split list is missing, or a listed id has no image/mask.
    """

    def __init__(
        self,
        root: str | Path,
        preprocessing: Preprocessing,
        *,
        split: str = "val",
        mask_folder: str | None = None,
    ) -> None:
        if not isinstance(preprocessing, Preprocessing):
            raise TypeError(f"preprocessing must be a Preprocessing, got {type(preprocessing).__name__}")
        if mask_folder not in (None, "SegmentationClass", "SegmentationObject"):
            raise ValueError(
                f"mask_folder must be 'SegmentationClass', 'SegmentationObject' or None, got {mask_folder!r}"
            )
        self.root = Path(root)
        self.preprocessing = preprocessing
        split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        image_dir = self.root / "JPEGImages"
        if not split_file.is_file() or not image_dir.is_dir():
            raise DatasetLayoutError(f"{self.root} is not a PASCAL VOC 2012 folder; expected layout {VOC_LAYOUT}")
        candidates = [mask_folder] if mask_folder else ["SegmentationClass", "SegmentationObject"]
        mask_dirs = [self.root / name for name in candidates if (self.root / name).is_dir()]
        if not mask_dirs:
            raise DatasetLayoutError(f"{self.root} has no {' or '.join(candidates)} folder; expected {VOC_LAYOUT}")
        mask_dir = mask_dirs[0]
        ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        if not ids:
            raise DatasetLayoutError(f"{split_file} lists no image ids; expected layout {VOC_LAYOUT}")
        self.samples: list[tuple[Path, Path]] = []
        for image_id in ids:
            image_path = _find_with_any_extension(image_dir, image_id)
            mask_path = _find_with_any_extension(mask_dir, image_id)
            if image_path is None or mask_path is None:
                raise DatasetLayoutError(
                    f"VOC id {image_id!r} from {split_file} has no image in {image_dir} or no mask in {mask_dir}; "
                    f"expected layout {VOC_LAYOUT}"
                )
            self.samples.append((image_path, mask_path))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.samples[index]
        image = load_rgb(image_path)
        mask = load_array(mask_path)
        if mask.ndim != 2:
            raise CorruptImageError(mask_path, f"a mask must be a single-channel palette PNG, got shape {mask.shape}")
        if mask.shape != (image.height, image.width):
            raise CorruptImageError(mask_path, f"mask is {mask.shape}, the image is {(image.height, image.width)}")
        return self._view(image, mask)


class MIT1003FixationDataset(_ImageWithMap):
    """Samples ``(x, f)``: the preprocessed stimulus and a bool map ``f`` of fixated pixels.

    ``f`` is the original-resolution fixation-point image (grey > 127) cropped to the region the
    model sees.

    Args:
        root: The ``MIT1003`` folder.
        preprocessing: The image policy (resize/crop).

    Raises:
        DatasetLayoutError: A folder is missing, it holds no stimuli, or a stimulus has no ``_fixPts``.
    """

    def __init__(self, root: str | Path, preprocessing: Preprocessing) -> None:
        if not isinstance(preprocessing, Preprocessing):
            raise TypeError(f"preprocessing must be a Preprocessing, got {type(preprocessing).__name__}")
        self.root = Path(root)
        self.preprocessing = preprocessing
        stimuli_dir, fixation_dir = self.root / "ALLSTIMULI", self.root / "ALLFIXATIONMAPS"
        if not stimuli_dir.is_dir() or not fixation_dir.is_dir():
            raise DatasetLayoutError(f"{self.root} is not an MIT1003 folder; expected layout {MIT1003_LAYOUT}")
        stimuli = list_image_files(stimuli_dir)
        if not stimuli:
            raise DatasetLayoutError(f"{stimuli_dir} holds no images; expected layout {MIT1003_LAYOUT}")
        self.samples: list[tuple[Path, Path]] = []
        for stimulus in stimuli:
            points = _find_with_any_extension(fixation_dir, f"{stimulus.stem}_fixPts")
            if points is None:
                raise DatasetLayoutError(
                    f"stimulus {stimulus.name} has no {stimulus.stem}_fixPts.jpg in {fixation_dir}; "
                    f"expected layout {MIT1003_LAYOUT}"
                )
            self.samples.append((stimulus, points))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        stimulus_path, points_path = self.samples[index]
        image = load_rgb(stimulus_path)
        points = load_array(points_path, grayscale=True) > 127
        if points.shape != (image.height, image.width):
            raise CorruptImageError(
                points_path, f"fixation points are {points.shape}, the stimulus is {(image.height, image.width)}"
            )
        return self._view(image, points)
