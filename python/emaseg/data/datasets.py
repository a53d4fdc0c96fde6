"""Segmentation datasets: one list of (image, mask) files per layout, one Dataset class for all.

Layouts (`cfg.data.dataset`; paths relative to `--data-root`):

| name | images | masks | classes |
|---|---|---|---|
| `cityscapes`, `synthetic` | `leftImg8bit/{split}/<city>/*_leftImg8bit.png` | `gtFine/{split}/<city>/*_gtFine_labelTrainIds.png` (`scripts/prepare_cityscapes.py`) | 19 |
| `voc12aug` | `JPEGImages/*.jpg` | `SegmentationClass/*.png`; the train split is `ImageSets/Segmentation/trainaug.txt` over `SegmentationClassAug/` (or mmseg's `train.txt` + `aug.txt`) | 21 |
| `pascal_context` | `JPEGImages/*.jpg` listed in `ImageSets/SegmentationContext/{split}.txt` | `SegmentationClassContext/*.png`, 0 = background -> ignored | 59 |
| `coco_stuff164k` | `images/{train2017,val2017}/*.jpg` | `annotations/{split}/*_labelTrainIds.png` | 171 |
| `ade20k` | `images/{training,validation}/*.jpg` | `annotations/{split}/*.png`, 0 = "other" -> ignored | 150 |
| `folder` | `images/...` | `masks/...` (see `folder_samples`) | `classes.json` |

The generated street scenes (`scripts/make_synthetic.py`) use the Cityscapes layout with the city
folder `synth`, so `synthetic` is read by the Cityscapes loader. Split names `train`/`val` work for
every layout (ADE20K's `training`/`validation` and COCO's `train2017`/`val2017` are mapped).

Masks hold class indices (single channel, read with Pillow so palette PNGs give their indices);
255 means "ignore". Datasets with `reduce_zero_label` (ADE20K, PASCAL Context) map 0 -> 255 and
k -> k - 1 on load, as mmsegmentation does.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch.utils.data
from PIL import Image

from ..classes import (ADE20K_CLASSES, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, COCO_STUFF_CLASSES,
                       PASCAL_CONTEXT_59_CLASSES, VOC_CLASSES, generic_palette, voc_palette)
from .transforms import TrainTransform

MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")


class DatasetError(RuntimeError):
    """Data that cannot be used as it is; the message names the file or folder to fix."""


Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], "tuple[np.ndarray, np.ndarray]"]


class SegmentationDataset(torch.utils.data.Dataset):
    """(image, mask) file pairs -> (uint8 BGR image (H, W, 3), uint8 label (H, W)).

    `dataset[i]` gives sample i, untransformed unless a transform is set. The training sampler
    indexes with `(i, seed)`: the transform then draws from `np.random.default_rng(seed)`, so a
    sample does not depend on which worker loads it, nor on whether training was resumed.

    Args:
        samples: (image path, mask path) pairs.
        classes: class names, index = label value.
        palette: one (R, G, B) per class.
        reduce_zero_label: map mask value 0 to ignore and k to k - 1.
        ignore_index: label value that no class owns.
        transform: `(image, label, rng) -> (image, label)`, e.g. `TrainTransform`.
        name: layout name, for messages.
    """

    def __init__(self, samples: list[tuple[str, str]], *, classes: list[str], palette: list[tuple[int, int, int]],
                 reduce_zero_label: bool = False, ignore_index: int = 255, transform: Transform | None = None,
                 name: str = "") -> None:
        if len(palette) != len(classes):
            raise DatasetError(f"{len(classes)} classes but {len(palette)} palette colours")
        if not 0 < len(classes) <= ignore_index:
            raise DatasetError(f"{len(classes)} classes: need 1..{ignore_index} (labels are uint8 and "
                               f"{ignore_index} means ignore)")
        self.samples = samples
        self.classes = list(classes)
        self.palette = [tuple(int(v) for v in c) for c in palette]
        self.reduce_zero_label = reduce_zero_label
        self.ignore_index = ignore_index
        self.transform = transform
        self.name = name

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The sample as stored (after `reduce_zero_label`), checked for size and label range."""
        image_path, mask_path = self.samples[index]
        image = read_image(image_path)
        label = read_mask(mask_path)
        if image.shape[:2] != label.shape:
            raise DatasetError(f"size mismatch: image {image_path} is {image.shape[1]}x{image.shape[0]} but "
                               f"mask {mask_path} is {label.shape[1]}x{label.shape[0]} (WxH)")
        if self.reduce_zero_label:
            label = label.copy()
            label[label == 0] = 255
            label -= 1
            label[label == 254] = 255
        bad = (label >= self.num_classes) & (label != self.ignore_index)
        if bad.any():
            values = np.unique(label[bad])[:10].tolist()
            raise DatasetError(f"mask {mask_path} has label values {values} (after reduce_zero_label="
                               f"{self.reduce_zero_label}); allowed are 0..{self.num_classes - 1} and "
                               f"{self.ignore_index} (ignore)")
        return image, label

    def __getitem__(self, key: int | tuple[int, object]) -> tuple[np.ndarray, np.ndarray]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, label = self.load(index)
        if self.transform is not None:
            image, label = self.transform(image, label, np.random.default_rng(seed))
        return image, label


def read_image(path: str) -> np.ndarray:
    """uint8 BGR (H, W, 3), as OpenCV (and mmcv's default backend) decodes it."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot read image {path} (missing, empty or not an image)")
    return image


def read_mask(path: str) -> np.ndarray:
    """Class indices as uint8 (H, W). Pillow, so that palette PNGs (VOC) give indices, not colours."""
    try:
        with Image.open(path) as im:
            mask = np.array(im)
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read mask {path}: {e}") from e
    if mask.ndim == 3:
        # Tolerate grey masks saved as RGB(A); real colour masks must be converted to indices.
        if mask.shape[2] >= 3 and (mask[:, :, 0] == mask[:, :, 1]).all() and (mask[:, :, 0] == mask[:, :, 2]).all():
            mask = mask[:, :, 0]
        else:
            raise DatasetError(f"mask {path} is a colour image; masks must hold one class index per pixel "
                               f"(single-channel or palette PNG)")
    if mask.dtype != np.uint8:
        if mask.dtype == bool or mask.min() < 0 or mask.max() > 255:
            raise DatasetError(f"mask {path} has values outside 0..255 ({mask.dtype}); labels are 8-bit")
        mask = mask.astype(np.uint8)
    return mask


# ----------------------------------------------------------------------------- layouts

def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"expected folder {path} ({what}) does not exist")
    return path


def is_image_file(path: Path) -> bool:
    """An image file as OpenCV sees it, decided as the C++ runtime does (cpp/src/frame_sources.cpp):
    a name OpenCV has a codec for (a damaged "x.png" counts, and its loader reports it) or contents
    OpenCV recognises. Hidden files, the temporaries of atomic writes among them, never are."""
    return not path.name.startswith(".") and (cv2.haveImageWriter(path.name) or cv2.haveImageReader(str(path)))


def _scan(folder: Path, keep: tuple[str, ...] | Callable[[Path], bool]) -> list[Path]:
    """Files under `folder` (recursively) whose names end with one of the suffixes `keep`, or
    for which `keep(path)` is true, sorted."""
    if isinstance(keep, tuple):
        suffixes = tuple(s.lower() for s in keep)
        keep = lambda path: path.name.lower().endswith(suffixes)  # noqa: E731 (one line beats a nested def)
    found = []
    for dirpath, _, filenames in os.walk(folder, followlinks=True):
        for name in filenames:
            if keep(Path(dirpath) / name):
                found.append(Path(dirpath) / name)
    return sorted(found)


def _pairs(images: list[Path], mask_of: Callable[[Path], Path], hint: str = "") -> list[tuple[str, str]]:
    pairs, missing = [], []
    for image in images:
        mask = mask_of(image)
        (pairs if mask.is_file() else missing).append((str(image), str(mask)))
    if missing:
        raise DatasetError(f"{len(missing)} of {len(images)} images have no mask, e.g. {missing[0][0]} "
                           f"-> expected {missing[0][1]}{hint}")
    return pairs


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"expected split file {path} does not exist")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"split file {path} is empty")
    return names


def _listed(root: Path, names: list[str], image_dir: str, image_ext: str, mask_dir: str, list_file: Path
            ) -> list[tuple[str, str]]:
    pairs = []
    for name in names:
        image, mask = root / image_dir / f"{name}{image_ext}", root / mask_dir / f"{name}.png"
        for path in (image, mask):
            if not path.is_file():
                raise DatasetError(f"{list_file} lists {name!r} but {path} does not exist")
        pairs.append((str(image), str(mask)))
    return pairs


def cityscapes_samples(root: Path, split: str) -> list[tuple[str, str]]:
    image_dir = _require_dir(root / "leftImg8bit" / split, "Cityscapes layout: leftImg8bit/<split>/<city>/*_leftImg8bit.png")
    mask_dir = _require_dir(root / "gtFine" / split, "Cityscapes layout: gtFine/<split>/<city>/*_gtFine_labelTrainIds.png")
    images = _scan(image_dir, ("_leftImg8bit.png",))
    if not images:
        raise DatasetError(f"no *_leftImg8bit.png images under {image_dir}")

    def mask_of(image: Path) -> Path:
        stem = image.name[: -len("_leftImg8bit.png")]
        return mask_dir / image.parent.relative_to(image_dir) / f"{stem}_gtFine_labelTrainIds.png"

    hint = ""
    probe = mask_of(images[0])
    if probe.with_name(probe.name.replace("_labelTrainIds", "_labelIds")).is_file():
        hint = f" (only *_gtFine_labelIds.png found: run python scripts/prepare_cityscapes.py --data-root {root})"
    return _pairs(images, mask_of, hint)


def voc_samples(root: Path, split: str) -> list[tuple[str, str]]:
    sets = root / "ImageSets" / "Segmentation"
    _require_dir(root / "JPEGImages", "VOC layout: JPEGImages/*.jpg")
    if split in ("train", "trainaug"):
        # The augmented training set (VOC 2012 train + SBD, 10582 images): DeepLab's trainaug.txt
        # over SegmentationClassAug, else mmseg's converter output (train.txt + aug.txt, concatenated).
        if (sets / "trainaug.txt").is_file():
            return _listed(root, _read_list(sets / "trainaug.txt"), "JPEGImages", ".jpg", "SegmentationClassAug",
                           sets / "trainaug.txt")
        if (sets / "aug.txt").is_file():
            return (_listed(root, _read_list(sets / "train.txt"), "JPEGImages", ".jpg", "SegmentationClass",
                            sets / "train.txt")
                    + _listed(root, _read_list(sets / "aug.txt"), "JPEGImages", ".jpg", "SegmentationClassAug",
                              sets / "aug.txt"))
        if split == "trainaug":
            raise DatasetError(f"neither {sets / 'trainaug.txt'} nor {sets / 'aug.txt'} exists (SBD augmentation)")
    return _listed(root, _read_list(sets / f"{split}.txt"), "JPEGImages", ".jpg", "SegmentationClass",
                   sets / f"{split}.txt")


def pascal_context_samples(root: Path, split: str) -> list[tuple[str, str]]:
    _require_dir(root / "JPEGImages", "PASCAL Context layout: JPEGImages/*.jpg")
    _require_dir(root / "SegmentationClassContext", "PASCAL Context layout: SegmentationClassContext/*.png")
    list_file = root / "ImageSets" / "SegmentationContext" / f"{split}.txt"
    return _listed(root, _read_list(list_file), "JPEGImages", ".jpg", "SegmentationClassContext", list_file)


def _flat_samples(root: Path, image_dir: str, mask_dir: str, mask_suffix: str, layout: str
                  ) -> list[tuple[str, str]]:
    images_at = _require_dir(root / image_dir, f"{layout} layout: {image_dir}/*.jpg")
    masks_at = _require_dir(root / mask_dir, f"{layout} layout: {mask_dir}/*{mask_suffix}")
    images = _scan(images_at, (".jpg",))
    if not images:
        raise DatasetError(f"no *.jpg images under {images_at}")
    return _pairs(images, lambda p: masks_at / p.parent.relative_to(images_at) / f"{p.stem}{mask_suffix}")


def coco_stuff_samples(root: Path, split: str) -> list[tuple[str, str]]:
    split = {"train": "train2017", "val": "val2017"}.get(split, split)
    return _flat_samples(root, f"images/{split}", f"annotations/{split}", "_labelTrainIds.png", "COCO-Stuff 164k")


def ade20k_samples(root: Path, split: str) -> list[tuple[str, str]]:
    split = {"train": "training", "val": "validation"}.get(split, split)
    return _flat_samples(root, f"images/{split}", f"annotations/{split}", ".png", "ADE20K")


def folder_samples(root: Path, split: str) -> list[tuple[str, str]]:
    """A user's own data. Either

    * `images/<split>/...` and `masks/<split>/...`, or
    * flat `images/...` and `masks/...` with `splits/<split>.txt` listing one image per line
      (its path relative to `images/`, with or without extension);

    a mask has the image's relative path and stem with a lossless extension (.png, .bmp, .tif).
    """
    images_root = _require_dir(root / "images", "folder layout: images/ and masks/ with matching file stems")
    masks_root = _require_dir(root / "masks", "folder layout: images/ and masks/ with matching file stems")
    if (images_root / split).is_dir():
        image_dir, mask_dir = images_root / split, _require_dir(masks_root / split, f"masks of split {split!r}")
        images = _scan(image_dir, is_image_file)
        if not images:
            raise DatasetError(f"no image files OpenCV can read under {image_dir}")
    elif (root / "splits" / f"{split}.txt").is_file():
        image_dir, mask_dir = images_root, masks_root
        by_stem: dict[str, Path] = {}
        for path in _scan(image_dir, is_image_file):
            by_stem[str(path.relative_to(image_dir).with_suffix(""))] = path
        images = []
        list_file = root / "splits" / f"{split}.txt"
        for name in _read_list(list_file):
            key = str(Path(name).with_suffix("")) if cv2.haveImageWriter(name) else name  # with an image extension
            if key not in by_stem:
                raise DatasetError(f"{list_file} lists {name!r} but no such image is under {image_dir}")
            images.append(by_stem[key])
    else:
        raise DatasetError(f"folder dataset {root}: no split {split!r}; expected {images_root / split}/ "
                           f"(with {masks_root / split}/) or {root / 'splits' / (split + '.txt')}")
    masks: dict[str, Path] = {}
    for path in _scan(mask_dir, MASK_EXTENSIONS):
        masks.setdefault(str(path.relative_to(mask_dir).with_suffix("")), path)

    def mask_of(image: Path) -> Path:
        key = str(image.relative_to(image_dir).with_suffix(""))
        return masks.get(key, mask_dir / f"{key}.png")

    return _pairs(images, mask_of)


def read_class_file(path: Path) -> tuple[list[str], list[tuple[int, int, int]], bool]:
    """`classes.json`: {"classes": [...], "palette": [[r, g, b], ...] (optional),
    "reduce_zero_label": false (optional)}."""
    if not path.is_file():
        raise DatasetError(f"expected {path} with {{\"classes\": [...], \"palette\": [[r, g, b], ...]}}")
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path} is not valid JSON: {e}") from e
    classes = spec.get("classes") if isinstance(spec, dict) else None
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise DatasetError(f"{path}: \"classes\" must be a non-empty list of names")
    palette = spec.get("palette")
    if palette is None:
        palette = generic_palette(len(classes))
    elif (not isinstance(palette, list) or len(palette) != len(classes)
          or not all(isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                     for c in palette)):
        raise DatasetError(f"{path}: \"palette\" must hold {len(classes)} [r, g, b] triples of 0..255")
    return list(classes), [tuple(c) for c in palette], bool(spec.get("reduce_zero_label", False))


# name -> (samples of a split, class names, palette, reduce_zero_label); `folder` reads classes.json.
LAYOUTS: dict[str, tuple[Callable[[Path, str], list[tuple[str, str]]], tuple[str, ...], Callable[[], list], bool]] = {
    "cityscapes": (cityscapes_samples, CITYSCAPES_CLASSES, lambda: list(CITYSCAPES_PALETTE), False),
    "synthetic": (cityscapes_samples, CITYSCAPES_CLASSES, lambda: list(CITYSCAPES_PALETTE), False),
    "voc12aug": (voc_samples, VOC_CLASSES, lambda: voc_palette(21), False),
    "pascal_context": (pascal_context_samples, PASCAL_CONTEXT_59_CLASSES, lambda: generic_palette(59), True),
    "coco_stuff164k": (coco_stuff_samples, COCO_STUFF_CLASSES, lambda: generic_palette(171), False),
    "ade20k": (ade20k_samples, ADE20K_CLASSES, lambda: generic_palette(150), True),
}


def build_dataset(data_cfg, root: str | os.PathLike, split: str, train: bool) -> SegmentationDataset:
    """The dataset `data_cfg.dataset` under `root`; with `train` the reference augmentation is on.

    Args:
        data_cfg: `Config.data` (layout name, augmentation, ignore index).
        root: dataset root folder.
        split: "train", "val" or a layout's own split name.
        train: apply `TrainTransform` (random, seeded per sample by the training sampler).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data root {root} does not exist")
    if not any(root.iterdir()):
        raise DatasetError(f"data root {root} is empty")
    name = data_cfg.dataset
    if name == "folder":
        classes, palette, reduce_zero_label = read_class_file(root / "classes.json")
        samples = folder_samples(root, split)
    elif name in LAYOUTS:
        list_samples, class_names, palette_fn, reduce_zero_label = LAYOUTS[name]
        classes, palette = list(class_names), palette_fn()
        samples = list_samples(root, split)
    else:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted([*LAYOUTS, 'folder']))}")
    transform = None
    if train:
        transform = TrainTransform(scale=data_cfg.scale, ratio_range=data_cfg.ratio_range,
                                   crop_size=data_cfg.crop_size, cat_max_ratio=data_cfg.cat_max_ratio,
                                   flip_prob=data_cfg.flip_prob, photometric=data_cfg.photometric,
                                   ignore_index=data_cfg.ignore_index)
    return SegmentationDataset(samples, classes=classes, palette=palette, reduce_zero_label=reduce_zero_label,
                               ignore_index=data_cfg.ignore_index, transform=transform, name=name)
