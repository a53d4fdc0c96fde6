"""The loss against the reference definition on hand-computed examples (spec section 5)."""
from __future__ import annotations

import math

import pytest
import torch

from emaseg.losses import cross_entropy, segmentation_loss

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
