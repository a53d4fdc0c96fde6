"""The reference training augmentation (spec section 7), on uint8 BGR numpy images with OpenCV.

Order: RandomResize -> RandomCrop (cat_max_ratio) -> RandomFlip -> PhotoMetricDistortion -> pad
to the crop size (image 0, label 255). Normalisation is not here: it runs on the whole batch as a
tensor op (`emaseg.inference.preprocess`), on the GPU when training there.

Every random draw comes from the `np.random.Generator` passed in, in mmsegmentation's order, so a
sample is a pure function of (image, label, seed): the training sampler hands each sample its own
seed, which makes augmentation independent of worker count and exact across a resume.

The test-time resize (`cfg.data.test_scale`, keep ratio) is part of inference
(`emaseg.inference`), so that evaluation and the exported model run the same code; labels are
never resized at test time (scores are compared at the original label size, like mmseg).
"""
from __future__ import annotations

import cv2
import numpy as np

from ..inference import rescale_size


def resize_keep_ratio(image: np.ndarray, label: np.ndarray | None, scale: tuple[int, int]
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """mmcv `imrescale`: bilinear for the image, nearest for the label."""
    h, w = image.shape[:2]
    new_h, new_w = rescale_size(h, w, (int(scale[0]), int(scale[1])))
    if (new_h, new_w) != (h, w):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        if label is not None:
            label = cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    return image, label


def random_resize(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *,
                  scale: tuple[int, int], ratio_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """mmcv RandomResize(scale, ratio_range, keep_ratio=True): target (int(s0*r), int(s1*r))."""
    ratio = rng.random() * (ratio_range[1] - ratio_range[0]) + ratio_range[0]
    target = (int(scale[0] * ratio), int(scale[1] * ratio))
    image, label = resize_keep_ratio(image, label, target)
    return image, label


def _crop_box(shape: tuple[int, ...], crop_size: tuple[int, int], rng: np.random.Generator
              ) -> tuple[int, int, int, int]:
    margin_h = max(shape[0] - crop_size[0], 0)
    margin_w = max(shape[1] - crop_size[1], 0)
    y1 = int(rng.integers(0, margin_h + 1))
    x1 = int(rng.integers(0, margin_w + 1))
    return y1, y1 + crop_size[0], x1, x1 + crop_size[1]


def random_crop(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *,
                crop_size: tuple[int, int], cat_max_ratio: float, ignore_index: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """mmseg RandomCrop: redraw (at most 10 times) until the crop shows more than one class and
    no class covers `cat_max_ratio` of its labelled pixels; after 10 misses the 11th draw is kept."""
    y1, y2, x1, x2 = _crop_box(image.shape, crop_size, rng)
    if cat_max_ratio < 1.0:
        for _ in range(10):
            counts = np.bincount(label[y1:y2, x1:x2].ravel(), minlength=256)
            counts[ignore_index] = 0
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
                break
            y1, y2, x1, x2 = _crop_box(image.shape, crop_size, rng)
    return image[y1:y2, x1:x2], label[y1:y2, x1:x2]


def random_flip(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *, prob: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip of image and label together with probability `prob`."""
    if rng.random() < prob:
        image, label = image[:, ::-1], label[:, ::-1]
    return image, label


def _convert(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    # float32 maths, clip, truncate back to uint8: exactly mmseg's `convert`.
    return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(image: np.ndarray, rng: np.random.Generator, *,
                           brightness_delta: int = 32, contrast_range: tuple[float, float] = (0.5, 1.5),
                           saturation_range: tuple[float, float] = (0.5, 1.5), hue_delta: int = 18
                           ) -> np.ndarray:
    """mmseg PhotoMetricDistortion on a uint8 BGR image; each step applies with p = 0.5.

    brightness, then contrast either first (mode 1) or last (mode 0), saturation and hue in
    OpenCV's uint8 HSV (H in [0, 180)).
    """
    def contrast(img: np.ndarray) -> np.ndarray:
        if rng.integers(2):
            img = _convert(img, alpha=rng.uniform(contrast_range[0], contrast_range[1]))
        return img

    if rng.integers(2):
        image = _convert(image, beta=rng.uniform(-brightness_delta, brightness_delta))
    mode = rng.integers(2)
    if mode == 1:
        image = contrast(image)
    if rng.integers(2):
        hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2HSV)
        hsv[:, :, 1] = _convert(hsv[:, :, 1], alpha=rng.uniform(saturation_range[0], saturation_range[1]))
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if rng.integers(2):
        hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2HSV)
        shift = int(rng.integers(-hue_delta, hue_delta))  # upper bound excluded, as np.random.randint
        hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int64) + shift) % 180
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if mode == 0:
        image = contrast(image)
    return image


def pad_to(image: np.ndarray, label: np.ndarray, size: tuple[int, int], *, ignore_index: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Pads bottom/right to `size` (H, W): image with 0, label with `ignore_index` (the reference's
    data preprocessor does this to the batch; per sample it is the same since crops are <= size)."""
    pad_h, pad_w = size[0] - image.shape[0], size[1] - image.shape[1]
    if pad_h > 0 or pad_w > 0:
        pad_h, pad_w = max(pad_h, 0), max(pad_w, 0)
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=0)
        label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=ignore_index)
    return image, label


class TrainTransform:
    """The reference training pipeline, `(image, label, rng) -> (image, label)`.

    Args:
        scale: RandomResize base scale (long, short) before the ratio.
        ratio_range: ratio ~ U[ratio_range].
        crop_size: (H, W) of the crop and of the padded output.
        cat_max_ratio: RandomCrop's largest-class limit (1.0 disables the redraws).
        flip_prob: horizontal flip probability.
        photometric: apply PhotoMetricDistortion.
        ignore_index: label of "no class" (crop statistics, label padding).
    """

    def __init__(self, *, scale: tuple[int, int], ratio_range: tuple[float, float], crop_size: tuple[int, int],
                 cat_max_ratio: float = 0.75, flip_prob: float = 0.5, photometric: bool = True,
                 ignore_index: int = 255) -> None:
        self.scale = (int(scale[0]), int(scale[1]))
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.cat_max_ratio = cat_max_ratio
        self.flip_prob = flip_prob
        self.photometric = photometric
        self.ignore_index = ignore_index

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        image, label = random_resize(image, label, rng, scale=self.scale, ratio_range=self.ratio_range)
        image, label = random_crop(image, label, rng, crop_size=self.crop_size,
                                   cat_max_ratio=self.cat_max_ratio, ignore_index=self.ignore_index)
        image, label = random_flip(image, label, rng, prob=self.flip_prob)
        if self.photometric:
            image = photometric_distortion(image, rng)
        image, label = pad_to(image, label, self.crop_size, ignore_index=self.ignore_index)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)
