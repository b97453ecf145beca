"""A contact sheet of a generated demo suite: one row of example images per split / domain.

Rows: train, val, ImageNet-C (one corruption per column at severity 3), ImageNet-R, ImageNet-Sketch, the
four PACS domains, VOC images, their segmentation masks (VOC colours), MIT1003 stimuli, and the stimuli
overlaid with their fixation density (red) and fixated pixels (yellow). Column k of the class-structured
rows shows class k.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .suite import PACS_DOMAINS, load_demo_suite_info

__all__ = ["save_contact_sheet"]

_LABEL_WIDTH = 110


def _first_file(folder: Path) -> Path | None:
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return files[0] if files else None


def _load_rgb(path: Path | None, cell: int) -> np.ndarray:
    if path is None:
        return np.full((cell, cell, 3), 40, dtype=np.uint8)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((cell, cell), Image.NEAREST))


def save_contact_sheet(
    root: str | os.PathLike[str], path: str | os.PathLike[str], *, columns: int = 10, cell: int = 96
) -> Path:
    """Save a PNG grid of examples of every split of the demo suite at ``root`` (written atomically).

    Args:
        root: a complete demo suite (with ``manifest.json``).
        path: output PNG path.
        columns: images per row (class-structured rows show classes ``0..columns-1``).
        cell: side of each thumbnail in pixels (nearest-neighbour upscaling).

    Returns:
        The path written.
    """
    if columns < 1 or cell < 8:
        raise ValueError(f"columns must be >= 1 and cell >= 8, got columns={columns}, cell={cell}")
    info = load_demo_suite_info(root)
    base = info.root
    names = list(info.class_names)
    rows: list[tuple[str, list[np.ndarray]]] = []

    def class_row(title: str, folder: Path) -> None:
        cells = [_load_rgb(_first_file(folder / names[k % len(names)]), cell) for k in range(columns)]
        rows.append((title, cells))

    class_row("train", base / "train")
    class_row("val", base / "val")
    corruptions = list(info.config.get("corruptions", []))
    if corruptions:
        cells = []
        for k in range(columns):
            corruption = corruptions[k % len(corruptions)]
            cells.append(_load_rgb(_first_file(base / "imagenet-c" / corruption / "3" / names[k % len(names)]), cell))
        rows.append(("imagenet-c s3", cells))
    class_row("imagenet-r", base / "imagenet-r")
    class_row("imagenet-sketch", base / "imagenet-sketch")
    for domain in PACS_DOMAINS:
        class_row(f"PACS {domain}", base / "PACS" / domain)

    voc = info.paths["voc"]
    ids = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text(encoding="utf-8").split()[:columns]
    rows.append(("VOC image", [_load_rgb(voc / "JPEGImages" / f"{i}.jpg", cell) for i in ids]))
    rows.append(("VOC mask", [_load_rgb(voc / "SegmentationClass" / f"{i}.png", cell) for i in ids]))

    mit = info.paths["mit1003"]
    stimuli = sorted((mit / "ALLSTIMULI").glob("*.jpeg"))[:columns]
    rows.append(("MIT1003", [_load_rgb(p, cell) for p in stimuli]))
    overlays = []
    for stimulus in stimuli:
        image = _load_rgb(stimulus, cell).astype(np.float32)
        density = _load_rgb(mit / "ALLFIXATIONMAPS" / f"{stimulus.stem}_fixMap.jpg", cell)[:, :, 0] / 255.0
        points = _load_rgb(mit / "ALLFIXATIONMAPS" / f"{stimulus.stem}_fixPts.jpg", cell)[:, :, 0] > 127
        mixed = image * (1 - 0.6 * density[:, :, None]) + 0.6 * density[:, :, None] * np.array([255, 0, 0])
        mixed[points] = (255, 255, 0)
        overlays.append(mixed.astype(np.uint8))
    rows.append(("MIT fixations", overlays))

    height = len(rows) * (cell + 4) + 4
    width = _LABEL_WIDTH + columns * (cell + 4)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (title, cells) in enumerate(rows):
        top = 4 + r * (cell + 4)
        draw.text((4, top + cell // 2 - 6), title, fill=(0, 0, 0))
        for c, array in enumerate(cells):
            sheet.paste(Image.fromarray(array), (_LABEL_WIDTH + c * (cell + 4), top))

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
    os.close(handle)
    try:
        sheet.save(temporary, format="PNG")
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return out

