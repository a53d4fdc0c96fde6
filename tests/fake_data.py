"""Tiny dataset trees in every supported layout, written with OpenCV/Pillow for the tests.

Scenes are crude streets (sky, building, road, a car, a person, a strip of ignore) whose pixel
colours follow the class, so a small model learns them in a few dozen iterations.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from emaseg.classes import CITYSCAPES_PALETTE


def street_label(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Cityscapes train ids: sky 10, building 2, road 0, car 13, person 11, ignore 255."""
    label = np.full((h, w), 2, np.uint8)
    label[: int(h * rng.uniform(0.15, 0.35))] = 10
    label[int(h * rng.uniform(0.55, 0.7)):] = 0
    cy, cx = int(h * rng.uniform(0.55, 0.75)), int(w * rng.uniform(0.1, 0.6))
    label[cy: cy + h // 6, cx: cx + w // 4] = 13
    py, px = int(h * rng.uniform(0.4, 0.6)), int(w * rng.uniform(0.65, 0.9))
    label[py: py + h // 4, px: px + max(w // 20, 2)] = 11
    label[-2:] = 255
    return label


def paint(label: np.ndarray, rng: np.random.Generator, palette=CITYSCAPES_PALETTE) -> np.ndarray:
    """A BGR image whose colour follows the label (palette colour + noise)."""
    lut = np.zeros((256, 3), np.float32)
    for i, (r, g, b) in enumerate(palette):
        lut[i] = (b, g, r)
    image = lut[label] + rng.normal(0, 12, (*label.shape, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def write_cityscapes(root: Path, split: str, n: int, *, city: str = "synth", size: tuple[int, int] = (128, 256),
                     seed: int = 0, label_ids: bool = False) -> list[np.ndarray]:
    """`leftImg8bit/{split}/{city}/*_leftImg8bit.png` + `gtFine/.../*_gtFine_labelTrainIds.png`
    (or `_labelIds.png` with the official ids when `label_ids`)."""
    rng = np.random.default_rng(seed)
    train_to_id = {0: 7, 2: 11, 10: 23, 11: 24, 13: 26, 255: 0}
    labels = []
    for i in range(n):
        stem = f"{city}_{i:06d}_000019"
        label = street_label(rng, *size)
        write_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", paint(label, rng))
        if label_ids:
            ids = np.vectorize(train_to_id.get, otypes=[np.uint8])(label)
            write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
        else:
            write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png", label)
        labels.append(label)
    return labels


def cityscapes_tree(root: Path, train: int, val: int) -> Path:
    """A Cityscapes-layout root with `train` and `val` images (seeds 0 and 1)."""
    write_cityscapes(root, "train", train, seed=0)
    write_cityscapes(root, "val", val, seed=1)
    return root


def _random_mask(rng: np.random.Generator, h: int, w: int, values: list[int]) -> np.ndarray:
    mask = np.full((h, w), values[0], np.uint8)
    for v in values[1:]:
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        mask[y: y + 8, x: x + 8] = v
    return mask


def write_jpg(path: Path, rng: np.random.Generator, h: int, w: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def write_voc(root: Path, *, size: tuple[int, int] = (40, 48), seed: int = 0) -> dict[str, np.ndarray]:
    """VOC2012 + SBD: palette PNGs in SegmentationClass, grey PNGs in SegmentationClassAug,
    train/val/trainaug lists. Returns the masks by name (raw values)."""
    rng = np.random.default_rng(seed)
    from emaseg.classes import voc_palette

    flat_palette = [v for c in voc_palette(256) for v in c]
    masks = {}
    names = {"train": ["2007_000001", "2007_000002"], "val": ["2007_000003"],
             "trainaug": ["2007_000001", "2007_000002", "2008_000010"]}
    for name in sorted({n for v in names.values() for n in v}):
        write_jpg(root / "JPEGImages" / f"{name}.jpg", rng, *size)
        mask = _random_mask(rng, *size, [0, 15, 20, 255])
        masks[name] = mask
        pal = Image.fromarray(mask, mode="P")
        pal.putpalette(flat_palette)
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        pal.save(root / "SegmentationClass" / f"{name}.png")
        write_png(root / "SegmentationClassAug" / f"{name}.png", mask)
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    for split, items in names.items():
        (sets / f"{split}.txt").write_text("\n".join(items) + "\n")
    return masks


def write_pascal_context(root: Path, *, size: tuple[int, int] = (40, 48), seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = {}
    sets = root / "ImageSets" / "SegmentationContext"
    sets.mkdir(parents=True, exist_ok=True)
    for split, items in {"train": ["2008_000002", "2008_000003"], "val": ["2008_000007"]}.items():
        for name in items:
            write_jpg(root / "JPEGImages" / f"{name}.jpg", rng, *size)
            masks[name] = _random_mask(rng, *size, [0, 1, 59, 30])
            write_png(root / "SegmentationClassContext" / f"{name}.png", masks[name])
        (sets / f"{split}.txt").write_text("\n".join(items) + "\n")
    return masks


def write_coco_stuff(root: Path, *, size: tuple[int, int] = (40, 48), seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = {}
    for split, items in {"train2017": ["000000000009", "000000000025"], "val2017": ["000000000139"]}.items():
        for name in items:
            write_jpg(root / "images" / split / f"{name}.jpg", rng, *size)
            masks[name] = _random_mask(rng, *size, [0, 170, 255, 92])
            write_png(root / "annotations" / split / f"{name}_labelTrainIds.png", masks[name])
    return masks


def write_ade20k(root: Path, *, size: tuple[int, int] = (40, 48), seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = {}
    for split, items in {"training": ["ADE_train_00000001", "ADE_train_00000002"],
                         "validation": ["ADE_val_00000001"]}.items():
        for name in items:
            write_jpg(root / "images" / split / f"{name}.jpg", rng, *size)
            masks[name] = _random_mask(rng, *size, [0, 1, 150, 7])
            write_png(root / "annotations" / split / f"{name}.png", masks[name])
    return masks


def write_folder(root: Path, *, split_dirs: bool = True, size: tuple[int, int] = (40, 48), seed: int = 0,
                 classes: list[str] | None = None) -> dict[str, np.ndarray]:
    """A user's own data: `classes.json`, `images/`, `masks/` (per-split folders or `splits/*.txt`)."""
    rng = np.random.default_rng(seed)
    classes = classes or ["background", "crack", "rust"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(
        {"classes": classes, "palette": [[0, 0, 0], [255, 0, 0], [0, 255, 0]][: len(classes)]}))
    masks = {}
    items = {"train": ["a", "b", "sub/c"], "val": ["d"]}
    for split, names in items.items():
        for name in names:
            rel = f"{split}/{name}" if split_dirs else name
            write_jpg(root / "images" / f"{rel}.jpg", rng, *size)
            masks[name] = _random_mask(rng, *size, [0, 1, 2, 255])
            write_png(root / "masks" / f"{rel}.png", masks[name])
    if not split_dirs:
        (root / "splits").mkdir(exist_ok=True)
        for split, names in items.items():
            (root / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return masks
