"""Rare-class sampling (DAFormer's recipe): the class probabilities, the images drawn, resumability."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from emaseg.data.rare_class import RareClassSampler, RareClassTable, class_pixel_counts


def _counts() -> np.ndarray:
    # 4 images, 3 classes: class 0 everywhere (frequent), class 1 in image 1 (50 px) and image 2
    # (5 px), class 2 nowhere.
    return np.array([[1000, 0, 0], [900, 50, 0], [995, 5, 0], [1000, 0, 0]], dtype=np.int64)


def test_probabilities_are_the_softmax_of_one_minus_the_pixel_share_over_t():
    table = RareClassTable(_counts(), temperature=0.5, min_pixels=1)
    share = np.array([3895, 55]) / 3950
    expected = np.exp((1 - share) / 0.5)
    assert table.classes.tolist() == [0, 1]  # class 2 has no image: it cannot be drawn
    np.testing.assert_allclose(table.probabilities, expected / expected.sum(), rtol=1e-12)
    # A low temperature (DAFormer's 0.01) does not overflow and favours the rare class fully.
    cold = RareClassTable(_counts(), temperature=0.01, min_pixels=1)
    assert cold.probabilities[0] < 1e-30 and all(np.isfinite(cold.probabilities))


def test_only_images_with_min_pixels_of_the_class_represent_it():
    table = RareClassTable(_counts(), temperature=0.01, min_pixels=10)
    rng = np.random.default_rng(0)
    draws = [table.draw(rng) for _ in range(200)]
    assert set(draws) == {1}  # class 1 is drawn, and only image 1 has >= 10 of its pixels
    with pytest.raises(ValueError, match="lower data.rcs_min_pixels"):
        RareClassTable(_counts(), temperature=0.01, min_pixels=10**6)
    with pytest.raises(ValueError, match="temperature"):
        RareClassTable(_counts(), temperature=0.0, min_pixels=1)


def test_draw_frequencies_follow_the_probabilities():
    table = RareClassTable(_counts(), temperature=1.0, min_pixels=1)
    rng = np.random.default_rng(1)
    draws = np.array([table.draw(rng) for _ in range(20000)])
    p0, p1 = table.probabilities
    # Class 0 spreads over its 4 images, class 1 over images 1 and 2.
    expected = np.array([p0 / 4, p0 / 4 + p1 / 2, p0 / 4 + p1 / 2, p0 / 4])
    observed = np.bincount(draws, minlength=4) / len(draws)
    sigma = np.sqrt(expected * (1 - expected) / len(draws))
    assert np.all(np.abs(observed - expected) < 5 * sigma), (observed, expected)


def test_the_stream_is_a_function_of_seed_and_position():
    table = RareClassTable(_counts(), temperature=1.0, min_pixels=1)
    straight = list(itertools.islice(iter(RareClassSampler(table, batch_size=3, seed=5)), 30))
    resumed = list(itertools.islice(iter(RareClassSampler(table, batch_size=3, seed=5, start_iter=4)), 18))
    assert resumed == straight[12:]
    assert [key for _, key in straight] == [(5, p) for p in range(30)]  # augmentation seeds as InfiniteSampler's
    ranks = [list(itertools.islice(iter(RareClassSampler(table, batch_size=3, seed=5, rank=r, world_size=2)), 6))
             for r in range(2)]
    assert [p for _, (_, p) in ranks[0]] == [0, 1, 2, 6, 7, 8] and [p for _, (_, p) in ranks[1]] == [3, 4, 5, 9, 10, 11]
    other = list(itertools.islice(iter(RareClassSampler(table, batch_size=3, seed=6)), 30))
    assert [i for i, _ in other] != [i for i, _ in straight]


class _Labels:
    def __init__(self, labels: list[np.ndarray]) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int) -> tuple[None, np.ndarray]:
        return None, self.labels[i]


def test_pixel_counts_skip_the_ignore_label():
    labels = [np.array([[0, 1], [255, 1]], dtype=np.uint8), np.array([[2, 2], [2, 255]], dtype=np.uint8)]
    counts = class_pixel_counts(_Labels(labels), 3)
    assert counts.tolist() == [[1, 2, 0], [0, 0, 3]]
    assert math.isclose(RareClassTable(counts, temperature=1.0, min_pixels=1).share.sum(), 1.0)
