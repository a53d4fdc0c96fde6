"""The training augmentation against hand-computed cases of the reference rules (spec section 7)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from emaseg.data.transforms import (TrainTransform, pad_to, photometric_distortion, random_crop, random_flip,
                                    random_resize, resize_keep_ratio)


class ScriptedRng:
    """Stands in for np.random.Generator and replays fixed draws, recording the calls."""

    def __init__(self, randoms=(), integers=(), uniforms=()):
        self.randoms, self.ints, self.uniforms = list(randoms), list(integers), list(uniforms)
        self.calls: list[tuple] = []

    def random(self):
        self.calls.append(("random",))
        return self.randoms.pop(0)

    def integers(self, low, high=None):
        self.calls.append(("integers", low, high))
        return self.ints.pop(0)

    def uniform(self, low, high):
        self.calls.append(("uniform", low, high))
        return self.uniforms.pop(0)


def test_keep_ratio_rule():
    # mmcv: factor = min(long/max(h, w), short/min(h, w)); size = int(x * factor + 0.5).
    image = np.zeros((375, 500, 3), np.uint8)
    out, _ = resize_keep_ratio(image, None, (2048, 512))     # factor min(4.096, 1.3653) = 512/375
    assert out.shape[:2] == (512, 683)                       # 500 * 1.36533 = 682.67 -> 683
    out, _ = resize_keep_ratio(np.zeros((1024, 2048, 3), np.uint8), None, (2048, 1024))
    assert out.shape[:2] == (1024, 2048)                     # Cityscapes at its own scale: unchanged
    out, _ = resize_keep_ratio(np.zeros((1024, 2048, 3), np.uint8), None, (1024, 2048))
    assert out.shape[:2] == (1024, 2048)                     # (long, short) order does not matter


def test_random_resize_scale_and_interpolation():
    # ratio = 0.5 + 1.5 * u; u = 0.5 -> 1.25 -> target (20, 10) -> factor min(20/16, 10/8) = 1.25 on 8x16.
    label = np.zeros((8, 16), np.uint8)
    label[:, 8:] = 7
    image = np.dstack([label * 30] * 3).astype(np.uint8)
    rng = ScriptedRng(randoms=[0.5])
    out_img, out_lab = random_resize(image, label, rng, scale=(16, 8), ratio_range=(0.5, 2.0))
    assert out_img.shape == (10, 20, 3) and out_lab.shape == (10, 20)
    assert set(np.unique(out_lab)) == {0, 7}                 # nearest: no new label values
    assert len(np.unique(out_img)) > 2                       # bilinear: blended values at the edge
    np.testing.assert_array_equal(out_img, cv2.resize(image, (20, 10), interpolation=cv2.INTER_LINEAR))


def test_random_resize_target_truncates():
    # int(scale * ratio), not rounding: u = 0.1 -> r = 0.65 -> (int(13.0), int(6.5)) = (13, 6).
    image = np.zeros((100, 100, 3), np.uint8)
    out, _ = random_resize(image, np.zeros((100, 100), np.uint8), ScriptedRng(randoms=[0.1]),
                           scale=(20, 10), ratio_range=(0.5, 2.0))
    assert out.shape[:2] == (6, 6)                           # factor min(13/100, 6/100) = 0.06


def test_crop_redraws_until_cat_max_ratio():
    label = np.zeros((10, 20), np.uint8)                     # left half: class 0 only
    label[:, 10:] = np.arange(10)[None, :] % 3 + 1           # right half: classes 1..3 mixed
    image = np.zeros((10, 20, 3), np.uint8)
    # draws (y, x): (0, 0) -> one class, redraw; (0, 10) -> three classes, max share 4/10 < 0.75: keep.
    rng = ScriptedRng(integers=[0, 0, 0, 10])
    img, lab = random_crop(image, label, rng, crop_size=(10, 10), cat_max_ratio=0.75, ignore_index=255)
    np.testing.assert_array_equal(lab, label[:, 10:])
    assert len(rng.calls) == 4


def test_crop_ignores_ignore_pixels_and_keeps_eleventh_draw():
    label = np.full((10, 20), 255, np.uint8)
    label[0, :] = 4                                          # one real class + ignore: never valid
    rng = ScriptedRng(integers=[0, 0] * 10 + [0, 7])
    _, lab = random_crop(np.zeros((10, 20, 3), np.uint8), label, rng, crop_size=(10, 10),
                         cat_max_ratio=0.75, ignore_index=255)
    assert len(rng.calls) == 22                              # first draw + 10 redraws
    np.testing.assert_array_equal(lab, label[:, 7:17])       # the last draw is used


def test_crop_mostly_one_class_is_rejected():
    label = np.zeros((10, 10), np.uint8)
    label[0, :8] = 1                                         # class 0 is 92% of the crop: redraw
    rng = ScriptedRng(integers=[0, 0] * 11)
    random_crop(np.zeros((10, 10, 3), np.uint8), label, rng, crop_size=(10, 10), cat_max_ratio=0.75, ignore_index=255)
    assert len(rng.calls) == 22
    label[:5, :] = 1                                         # 50/50: accepted at once
    rng = ScriptedRng(integers=[0, 0])
    random_crop(np.zeros((10, 10, 3), np.uint8), label, rng, crop_size=(10, 10), cat_max_ratio=0.75, ignore_index=255)
    assert len(rng.calls) == 2


def test_pad_with_zero_and_ignore():
    image = np.full((3, 4, 3), 9, np.uint8)
    label = np.full((3, 4), 2, np.uint8)
    img, lab = pad_to(image, label, (5, 6), ignore_index=255)
    assert img.shape == (5, 6, 3) and lab.shape == (5, 6)
    assert (img[:3, :4] == 9).all() and (img[3:] == 0).all() and (img[:, 4:] == 0).all()
    assert (lab[:3, :4] == 2).all() and (lab[3:] == 255).all() and (lab[:, 4:] == 255).all()


def test_flip_moves_image_and_label_together():
    label = np.arange(12, dtype=np.uint8).reshape(3, 4)
    image = np.dstack([label, label + 100, label + 200])
    img, lab = random_flip(image, label, ScriptedRng(randoms=[0.2]), prob=0.5)
    np.testing.assert_array_equal(lab, label[:, ::-1])
    np.testing.assert_array_equal(img[:, :, 0], lab)         # still pixel-aligned
    img, lab = random_flip(image, label, ScriptedRng(randoms=[0.7]), prob=0.5)
    np.testing.assert_array_equal(lab, label)


def test_photometric_brightness_then_contrast_last():
    image = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    # brightness yes (+10.7), mode 0 (contrast last), saturation no, hue no, contrast yes (x1.2)
    rng = ScriptedRng(integers=[1, 0, 0, 0, 1], uniforms=[10.7, 1.2])
    out = photometric_distortion(image, rng)
    step1 = np.clip(image.astype(np.float32) + 10.7, 0, 255).astype(np.uint8)
    expected = np.clip(step1.astype(np.float32) * 1.2, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert ("uniform", -32, 32) in rng.calls and ("uniform", 0.5, 1.5) in rng.calls


def test_photometric_hue_in_opencv_hsv():
    image = np.random.default_rng(1).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    # brightness no, mode 1 (contrast first: no), saturation no, hue yes with shift -5
    rng = ScriptedRng(integers=[0, 1, 0, 0, 1, -5])
    out = photometric_distortion(image, rng)
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    hsv[:, :, 0] = (hsv[:, :, 0].astype(int) - 5) % 180
    np.testing.assert_array_equal(out, cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))
    assert ("integers", -18, 18) in rng.calls


def test_photometric_changes_image_never_label():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 5, (40, 60)).astype(np.uint8)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    on = TrainTransform(scale=(60, 40), ratio_range=(0.5, 2.0), crop_size=(32, 48), photometric=True)
    off = TrainTransform(scale=(60, 40), ratio_range=(0.5, 2.0), crop_size=(32, 48), photometric=False)
    changed = 0
    for seed in range(8):
        img_on, lab_on = on(image, label, np.random.default_rng(seed))
        img_off, lab_off = off(image, label, np.random.default_rng(seed))
        np.testing.assert_array_equal(lab_on, lab_off)       # photometric is last: same geometry
        assert img_on.shape == (32, 48, 3) and lab_on.shape == (32, 48)
        changed += not np.array_equal(img_on, img_off)
    assert changed >= 5                                      # 1 - 0.5^4 of samples change


@pytest.mark.parametrize("seed", range(4))
def test_pipeline_output_is_padded_crop(seed):
    label = np.random.default_rng(seed).integers(0, 3, (20, 30)).astype(np.uint8)
    image = np.zeros((20, 30, 3), np.uint8)
    t = TrainTransform(scale=(30, 20), ratio_range=(0.5, 2.0), crop_size=(24, 24), cat_max_ratio=0.75)
    img, lab = t(image, label, np.random.default_rng(seed))
    assert img.shape == (24, 24, 3) and lab.shape == (24, 24)
    assert set(np.unique(lab)) <= {0, 1, 2, 255}
    assert img.flags["C_CONTIGUOUS"] and lab.flags["C_CONTIGUOUS"]
