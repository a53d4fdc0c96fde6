"""The loss against the reference definition on hand-computed examples (spec section 5)."""
from __future__ import annotations

import math

import pytest
import torch

from emaseg.losses import cross_entropy, ohem_weights, segmentation_loss

torch.set_num_threads(1)


def test_mean_over_all_pixels_ignored_count_as_zero():
    # 3 pixels: logits (0, ln 3) label 0 -> CE ln 4; logits (0, 0) label 1 -> ln 2; third ignored.
    logits = torch.tensor([[[[0.0, 0.0, 5.0]], [[math.log(3.0), 0.0, -5.0]]]])  # (1, 2, 1, 3)
    label = torch.tensor([[[0, 1, 255]]])
    loss = cross_entropy(logits, label, align_corners=False)
    # (ln 4 + ln 2 + 0) / 3 pixels = ln 2; PyTorch's default mean would give 1.5 ln 2.
    assert loss.item() == pytest.approx(math.log(2.0), abs=1e-6)


def test_logits_resized_with_align_corners():
    # Class-1 logits (0, 4) upsampled from width 2 to 4, class 0 at 0, label 1 everywhere:
    # CE = log(1 + exp(-z)). align_corners=True: z = 0, 4/3, 8/3, 4; False: z = 0, 1, 3, 4.
    logits = torch.tensor([[[[0.0, 0.0]], [[0.0, 4.0]]]])  # (1, 2, 1, 2)
    label = torch.ones(1, 1, 4, dtype=torch.long)
    softplus = lambda z: math.log1p(math.exp(-z))  # noqa: E731
    true = sum(softplus(z) for z in (0, 4 / 3, 8 / 3, 4)) / 4
    false = sum(softplus(z) for z in (0, 1, 3, 4)) / 4
    assert cross_entropy(logits, label, align_corners=True).item() == pytest.approx(true, abs=1e-6)
    assert cross_entropy(logits, label, align_corners=False).item() == pytest.approx(false, abs=1e-6)


def test_total_is_decode_plus_04_aux():
    logits = torch.tensor([[[[0.0, 0.0, 5.0]], [[math.log(3.0), 0.0, -5.0]]]])
    aux = torch.zeros(1, 2, 1, 3)                       # CE ln 2 on each of the 2 labelled pixels
    label = torch.tensor([[[0, 1, 255]]])
    total, parts = segmentation_loss({"out": logits, "aux": aux}, label, align_corners=False)
    assert parts["decode"].item() == pytest.approx(math.log(2.0), abs=1e-6)
    assert parts["aux"].item() == pytest.approx(2 * math.log(2.0) / 3, abs=1e-6)
    assert total.item() == pytest.approx(math.log(2.0) + 0.4 * 2 * math.log(2.0) / 3, abs=1e-6)
    total, parts = segmentation_loss({"out": logits}, label, align_corners=False)  # eval output: no aux
    assert set(parts) == {"decode"} and total.item() == pytest.approx(math.log(2.0), abs=1e-6)


def test_gradient_flows_only_from_labelled_pixels():
    logits = torch.zeros(1, 3, 2, 2, requires_grad=True)
    label = torch.tensor([[[0, 255], [255, 255]]])
    cross_entropy(logits, label, align_corners=False).backward()
    grad = logits.grad[0]
    assert grad[:, 0, 0].abs().sum() > 0 and grad[:, 1:, :].abs().sum() == 0 and grad[:, 0, 1].abs().sum() == 0
    # d/dz of (CE / 4 pixels) at uniform logits: (softmax - onehot) / 4.
    torch.testing.assert_close(grad[:, 0, 0], torch.tensor([1 / 3 - 1, 1 / 3, 1 / 3]) / 4)


# ---------------------------------------------------------------- class_weight and OHEM (mmseg's options)

def _three_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    # Pixel CEs: ln 4 (label 0), ln 2 (label 1), ignored.
    logits = torch.tensor([[[[0.0, 0.0, 5.0]], [[math.log(3.0), 0.0, -5.0]]]])
    return logits, torch.tensor([[[0, 1, 255]]])


def test_class_weight_scales_each_pixel_and_still_divides_by_all_pixels():
    logits, label = _three_pixels()
    loss = cross_entropy(logits, label, align_corners=False, class_weight=torch.tensor([2.0, 0.5]))
    # mmseg: mean over the 3 pixels of w[label] * CE, not renormalised by the weights' sum.
    assert loss.item() == pytest.approx((2 * math.log(4.0) + 0.5 * math.log(2.0)) / 3, abs=1e-6)
    ones = cross_entropy(logits, label, align_corners=False, class_weight=torch.ones(2))
    assert ones.item() == pytest.approx(cross_entropy(logits, label, align_corners=False).item(), abs=1e-7)


def _ohem_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image, 6 pixels; the true class's probabilities are planted: 0.9, 0.2, 0.6, 0.4, 0.8 and
    an ignored pixel. Two classes, so logit z for class 1 vs 0 gives p = sigmoid(z)."""
    p_true = torch.tensor([0.9, 0.2, 0.6, 0.4, 0.8, 0.5])
    label = torch.tensor([[[1, 0, 1, 0, 1, 255]]])
    z = torch.log(p_true / (1 - p_true))
    sign = torch.where(label[0, 0] == 1, 1.0, -1.0)
    logits = torch.stack([torch.zeros(6), sign * z]).reshape(1, 2, 1, 6)
    return logits, label, p_true


def test_ohem_threshold_keeps_pixels_below_max_of_thresh_and_the_kth_probability():
    logits, label, p = _ohem_case()
    # Sorted true-class probabilities of the labelled pixels: 0.2 0.4 0.6 0.8 0.9.
    # min_kept 1 -> floor = sorted[1] = 0.4; thresh 0.7 wins: keep p < 0.7, pixels 1, 2, 3.
    w = ohem_weights(logits, label, thresh=0.7, min_kept=1)
    assert w.tolist() == [[[0.0, 1.0, 1.0, 1.0, 0.0, 0.0]]]
    # min_kept 3 -> floor = sorted[3] = 0.8 beats thresh 0.3: keep p < 0.8 (strict), pixels 1, 2, 3.
    w = ohem_weights(logits, label, thresh=0.3, min_kept=3)
    assert w.tolist() == [[[0.0, 1.0, 1.0, 1.0, 0.0, 0.0]]]
    # min_kept beyond the labelled pixels: the floor is the largest probability, 0.9 (strict), so
    # everything but the most confident pixel and the ignored one stays.
    w = ohem_weights(logits, label, thresh=0.1, min_kept=50)
    assert w.tolist() == [[[0.0, 1.0, 1.0, 1.0, 1.0, 0.0]]]


def test_ohem_without_threshold_keeps_the_largest_losses_and_counts_min_kept_per_image():
    logits, label, p = _ohem_case()
    w = ohem_weights(logits, label, thresh=None, min_kept=2)  # the 2 hardest: p 0.2 and 0.4
    assert w.tolist() == [[[0.0, 1.0, 0.0, 1.0, 0.0, 0.0]]]
    batch = ohem_weights(logits.repeat(2, 1, 1, 1), label.repeat(2, 1, 1), thresh=None, min_kept=1)
    assert batch.sum().item() == 2  # min_kept x batch, taken over the whole batch
    # The loss: the kept pixels' CE over all 6 pixels, ignored included.
    loss = cross_entropy(logits, label, align_corners=False, ohem=(None, 2))
    assert loss.item() == pytest.approx((-math.log(0.2) - math.log(0.4)) / 6, abs=1e-5)


def test_ohem_applies_to_the_decode_head_only_and_blocks_no_gradient_path():
    logits, label, p = _ohem_case()
    logits.requires_grad_(True)
    aux = torch.zeros(1, 2, 1, 6)
    total, parts = segmentation_loss({"out": logits, "aux": aux}, label, align_corners=False, ohem=(None, 2))
    assert parts["aux"].item() == pytest.approx(5 * math.log(2.0) / 6, abs=1e-6)  # every labelled pixel
    total.backward()
    kept = logits.grad[0, :, 0].abs().sum(0) > 0
    assert kept.tolist() == [False, True, False, True, False, False]
