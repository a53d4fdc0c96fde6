"""Class names and palettes (RGB) of the datasets we know by name."""
from __future__ import annotations

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "train", "motorcycle", "bicycle",
)

CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)


def generic_palette(num_classes: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """A deterministic, well-spread palette for datasets without an official one."""
    import random

    rng = random.Random(seed)
    return [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(num_classes)]


def classes_and_palette(num_classes: int) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Cityscapes names for 19 classes, otherwise numbered names and a generic palette."""
    if num_classes == len(CITYSCAPES_CLASSES):
        return list(CITYSCAPES_CLASSES), list(CITYSCAPES_PALETTE)
    return [f"class_{i}" for i in range(num_classes)], generic_palette(num_classes)
