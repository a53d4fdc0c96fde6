"""emaseg.resize: OpenCV's uint8 bilinear resize bit for bit, in eager, TorchScript and the exported module."""
from typing import Dict

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emaseg import get_config
from emaseg.export import ResizePolicy
from emaseg.export.module import SegmentationModule
from emaseg.resize import resize_uint8_like_cv2

# (H, W) -> (h, w): down, up, mixed, odd, 1-pixel rows/columns, exact 2x down (OpenCV's INTER_AREA
# branch), 2x in one axis only, exact 2x/3x up, same size (a copy), non-integer ratios.
GRID = [
    ((37, 53), (17, 29)), ((17, 29), (37, 53)), ((40, 30), (13, 71)), ((31, 47), (47, 31)),
    ((1, 40), (1, 13)), ((1, 40), (7, 60)), ((40, 1), (13, 1)), ((40, 1), (9, 5)), ((1, 1), (6, 4)),
    ((9, 7), (1, 1)), ((64, 96), (32, 48)), ((63, 95), (31, 47)), ((64, 96), (32, 96)), ((64, 96), (64, 48)),
    ((20, 30), (40, 60)), ((11, 13), (33, 39)), ((25, 33), (25, 33)), ((100, 100), (3, 97)),
    ((97, 131), (96, 160)), ((203, 301), (96, 160)), ((2, 2), (17, 19)), ((128, 256), (127, 255)),
]


def random_image(rng: np.random.Generator, hw) -> np.ndarray:
    return rng.integers(0, 256, (*hw, 3), dtype=np.uint8)


def cv2_resize(img: np.ndarray, hw) -> np.ndarray:
    return cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def scripted():
    return torch.jit.script(resize_uint8_like_cv2)


@pytest.mark.parametrize("src,dst", GRID)
def test_equals_cv2_bit_for_bit(src, dst, scripted):
    rng = np.random.default_rng(src[0] * 1000 + dst[1])
    # Random noise, saturated values and a flat white image (the largest intermediate sums).
    images = [random_image(rng, src) for _ in range(3)]
    images += [(rng.integers(0, 2, (*src, 3)) * 255).astype(np.uint8), np.full((*src, 3), 255, np.uint8)]
    for img in images:
        expected = cv2_resize(img, dst).reshape(*dst, 3)
        got = resize_uint8_like_cv2(torch.from_numpy(img)[None], dst)[0]
        assert got.dtype == torch.uint8 and tuple(got.shape) == (*dst, 3)
        assert int((got.numpy() != expected).sum()) == 0
        assert torch.equal(scripted(torch.from_numpy(img)[None], dst)[0], got)


def test_batch_and_random_sizes(scripted):
    """Many random sizes (up, down, mixed), each on a batch of 2 images resized in one call."""
    rng = np.random.default_rng(12)
    mismatched = 0
    for _ in range(120):
        src = tuple(int(v) for v in rng.integers(1, 70, 2))
        dst = tuple(int(v) for v in rng.integers(1, 70, 2))
        batch = np.stack([random_image(rng, src), random_image(rng, src)])
        got = scripted(torch.from_numpy(batch), dst).numpy()
        mismatched += sum(int((got[i] != cv2_resize(batch[i], dst).reshape(*dst, 3)).sum()) for i in range(2))
    assert mismatched == 0


def test_1080p_to_network_size():
    """The deployment case: a 1920x1080 frame to the demo model's 256x455 (ratio 4.22)."""
    img = random_image(np.random.default_rng(3), (1080, 1920))
    got = resize_uint8_like_cv2(torch.from_numpy(img)[None], (256, 455))[0].numpy()
    assert int((got != cv2_resize(img, (256, 455))).sum()) == 0


def test_same_size_is_the_input():
    x = torch.from_numpy(random_image(np.random.default_rng(4), (19, 23)))[None]
    assert resize_uint8_like_cv2(x, (19, 23)) is x


class Echo(nn.Module):
    """A 'network' whose logits are its input: the module's output then shows its preprocessing."""

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"out": x}


@pytest.mark.parametrize("frame,size", [((97, 131), (48, 64)), ((60, 80), (120, 160)), ((64, 96), (32, 48))])
def test_exported_module_preprocessing_is_cv2_then_normalise(frame, size):
    cfg = get_config("emanet_r18w8-d8_128x256_synthetic")
    module = torch.jit.script(SegmentationModule(Echo(), cfg, ResizePolicy("size", size=size)))
    bgr = random_image(np.random.default_rng(frame[0]), frame)
    resized = cv2_resize(bgr, size)
    rgb = resized[..., ::-1] if cfg.data.bgr_to_rgb else resized
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    x = (x - torch.tensor(cfg.data.mean).view(1, 3, 1, 1)) / torch.tensor(cfg.data.std).view(1, 3, 1, 1)
    align = cfg.model.align_corners
    expected = F.interpolate(x, size=frame, mode="bilinear", align_corners=align)  # logits to the frame
    assert torch.equal(module.logits(torch.from_numpy(bgr)[None]), expected)


def test_labels_from_scores_is_argmax():
    """The module's fast argmax gives argmax's labels: ties (first index), +-inf, NaN, both dtypes."""
    from emaseg.inference import labels_from_scores
    scripted_labels = torch.jit.script(labels_from_scores)
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 19, 23, 31, generator=gen)
    scores[:, 7] = scores[:, 3]                     # exact ties
    scores[0, :, 0, 0] = 0.0                        # all equal
    scores[1, 5, 2, 2] = float("inf")
    scores[1, :, 3, 3] = float("-inf")
    for s in (scores, scores.round(decimals=1)):    # coarse values: many ties
        for dtype in (torch.uint8, torch.int64):
            for fn in (labels_from_scores, scripted_labels):
                got = fn(s, dtype)
                assert got.dtype == dtype and torch.equal(got.long(), s.argmax(dim=1))
    with_nan = scores.clone()
    with_nan[0, 4, 1, 1] = with_nan[0, 9, 1, 1] = float("nan")
    assert torch.equal(labels_from_scores(with_nan, torch.int64), with_nan.argmax(dim=1))
    # Outside no_grad (a plain forward call) the scores require grad.
    assert torch.equal(labels_from_scores(scores.requires_grad_(), torch.int64), scores.argmax(dim=1))
