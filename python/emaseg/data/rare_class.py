"""Rare-class sampling of training images (DAFormer, Hoyer et al., CVPR 2022, section 3.3).

Images that show a rare class are drawn more often: for each sample, a class c is drawn with
probability softmax((1 - f_c) / T) over the classes, f_c being c's share of all labelled pixels,
then an image uniformly among those holding at least `min_pixels` pixels of c. A low T favours
the rare classes strongly (DAFormer uses 0.01). Frequent classes still appear, in the same images.

The draw for sample position p is seeded by (seed, p), like its augmentation, so a resumed run
draws what a straight run would have drawn (`emaseg.data.loader`).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch.utils.data
from tqdm import tqdm


def class_pixel_counts(dataset, num_classes: int, *, desc: str = "class statistics") -> np.ndarray:
    """(images, classes) int64: each stored label map's pixel count per class (ignore not counted)."""
    counts = np.zeros((len(dataset), num_classes), dtype=np.int64)
    for i in tqdm(range(len(dataset)), desc=desc, leave=False, dynamic_ncols=True):
        label = dataset.load(i)[1]
        counts[i] = np.bincount(label.ravel(), minlength=256)[:num_classes]
    return counts


class RareClassTable:
    """The class probabilities and, per class, the images that may represent it.

    Args:
        counts: `class_pixel_counts` of the training set.
        temperature: T above; > 0.
        min_pixels: an image represents class c when it holds at least this many pixels of c.
    """

    def __init__(self, counts: np.ndarray, *, temperature: float, min_pixels: int) -> None:
        if temperature <= 0:
            raise ValueError("the rare-class sampling temperature must be > 0")
        share = counts.sum(axis=0) / max(int(counts.sum()), 1)
        self.images = [np.flatnonzero(counts[:, c] >= max(min_pixels, 1)) for c in range(counts.shape[1])]
        self.classes = np.array([c for c in range(counts.shape[1]) if len(self.images[c]) > 0], dtype=np.int64)
        if len(self.classes) == 0:
            raise ValueError(f"no training image holds {min_pixels} pixels of any class: lower data.rcs_min_pixels")
        logits = (1.0 - share[self.classes]) / temperature
        weights = np.exp(logits - logits.max())  # softmax, shifted: T = 0.01 overflows exp otherwise
        self.probabilities = weights / weights.sum()
        self.share = share

    def draw(self, rng: np.random.Generator) -> int:
        """One image index: a class by its probability, then one of its images uniformly."""
        c = self.classes[rng.choice(len(self.classes), p=self.probabilities)]
        candidates = self.images[c]
        return int(candidates[rng.integers(len(candidates))])

    def summary(self, class_names: list[str]) -> str:
        """One line: the classes most often drawn, with their probabilities and pixel shares."""
        order = np.argsort(-self.probabilities)[:5]
        top = ", ".join(f"{class_names[self.classes[i]]} {self.probabilities[i]:.2f} "
                        f"(pixels {100 * self.share[self.classes[i]]:.1f}%)" for i in order)
        missing = len(self.images) - len(self.classes)
        return f"rare-class sampling over {len(self.classes)} classes; most drawn: {top}" + (
            f"; {missing} classes have no image to draw" if missing else "")


class RareClassSampler(torch.utils.data.Sampler):
    """`InfiniteSampler`'s stream of `(index, (seed, position))`, with each index drawn by `table`."""

    def __init__(self, table: RareClassTable, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start_iter: int = 0) -> None:
        if seed < 0:
            raise ValueError("the seed must be >= 0")
        self.table, self.batch_size, self.seed = table, batch_size, seed
        self.rank, self.world_size, self.start_iter = rank, world_size, start_iter

    def __iter__(self) -> Iterator[tuple[int, tuple[int, int]]]:
        global_batch = self.batch_size * self.world_size
        iteration = self.start_iter
        while True:
            first = iteration * global_batch + self.rank * self.batch_size
            for position in range(first, first + self.batch_size):
                # Its own stream: (seed, position) alone seeds the sample's augmentation.
                index = self.table.draw(np.random.default_rng([self.seed, position, 1]))
                yield index, (self.seed, position)
            iteration += 1
