"""OpenCV's uint8 bilinear resize (`cv2.resize(..., interpolation=cv2.INTER_LINEAR)`), bit for bit, in torch.

The reference test pipeline (mmcv `imresize`) resizes the uint8 BGR frame with OpenCV before
normalising, so the network sees OpenCV's rounding. This reproduces it with tensor ops only,
so it scripts with TorchScript (the exported file runs it) and traces with torch.export.

What OpenCV does for 8-bit INTER_LINEAR (imgproc/src/resize.cpp, checked against cv2 5.0 on
random images; see tests/test_resize_exact.py):
- per output coordinate d: f = float32((d + 0.5) * scale - 0.5) with scale = 1 / (dst / src) in
  double, s = floor(f), f -= s; weights round((1 - f) * 2048) and round(f * 2048), each rounded
  half to even separately (so they need not sum to 2048);
- columns: a source index below 0 or at/after the last column is clamped with f = 0 (the weights
  become 2048, 0); rows keep their weights and only clamp the indices;
- horizontal pass: exact int sums c0 * a0 + c1 * a1 (<= 255 * 2049, fits easily);
- vertical pass (the SIMD kernel, which this cv2 runs for every pixel of a row):
  ((h0 >> 4) * b0 >> 16) + ((h1 >> 4) * b1 >> 16), then (+ 2) >> 2, saturated to uint8.
  This is not the exact (h0 * b0 + h1 * b1 + 2^21) >> 22 of OpenCV's scalar tail: the two differ
  by one on about 1 in 10 pixels, and cv2 5.0 never took the scalar formula in our tests.
- OpenCV turns an exact 2x downscale in both axes into INTER_AREA, (a + b + c + d + 2) >> 2, and
  a same-size resize into a copy: the formula above gives exactly these in both cases (weights
  1024/1024 and 2048/0), so they need no branch of their own.
"""
from typing import Tuple

import torch

def _axis_weights(src: int, dst: int, device: torch.device, clamp_weights: bool
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (i0, i1) and fixed-point weights (w0, w1) of `dst` outputs along one axis.

    `clamp_weights`: OpenCV's column rule (weights 2048/0 past either border); rows only clamp indices."""
    # As OpenCV: 1 / inv_scale, in double. No float(): it would pin torch.export's dynamic sizes.
    scale = 1.0 / (dst / src)
    pos = ((torch.arange(dst, dtype=torch.float64, device=device) + 0.5) * scale - 0.5).to(torch.float32)
    start = torch.floor(pos)
    frac = pos - start
    index = start.to(torch.int64)
    if clamp_weights:
        outside = (index < 0) | (index >= src - 1)
        frac = torch.where(outside, torch.zeros_like(frac), frac)
        index = torch.where(index < 0, torch.zeros_like(index), index)
    # float32 arithmetic as OpenCV; torch.round is half-to-even like cvRound. 2048 = 1 << 11,
    # OpenCV's INTER_RESIZE_COEF_BITS (a literal: TorchScript cannot read module globals).
    w0 = torch.round((1.0 - frac) * 2048.0).to(torch.int32)
    w1 = torch.round(frac * 2048.0).to(torch.int32)
    i0 = index.clamp(0, src - 1)
    i1 = (index + 1).clamp(0, src - 1)
    return i0, i1, w0, w1


@torch.jit.unused
def _exporting() -> bool:
    return torch.compiler.is_compiling()


def resize_uint8_like_cv2(images: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """uint8 (N, H, W, C) -> uint8 (N, h, w, C) equal to cv2.resize(img, (w, h), interpolation=INTER_LINEAR)
    for each image. Same size returns `images` itself, except under torch.export, where that
    branch would become a guard on the dynamic frame size (the formula gives the copy anyway)."""
    n, src_h, src_w, c = images.shape[0], images.shape[1], images.shape[2], images.shape[3]
    dst_h, dst_w = size[0], size[1]
    if (torch.jit.is_scripting() or not _exporting()) and dst_h == src_h and dst_w == src_w:
        return images
    device = images.device
    y0, y1, b0, b1 = _axis_weights(src_h, dst_h, device, False)
    x0, x1, a0, a1 = _axis_weights(src_w, dst_w, device, True)
    # Only what the output needs: the two source rows of every output row (stacked, so each
    # later op runs once), then their two columns.
    rows = images.index_select(1, torch.cat([y0, y1]))                       # (N, 2h, W, C) uint8
    left = rows.index_select(2, x0).to(torch.int32).view(n, 2 * dst_h, dst_w * c)
    right = rows.index_select(2, x1).to(torch.int32).view(n, 2 * dst_h, dst_w * c)
    # Weights repeated per channel: broadcasting over a trailing size-C dim is ~8x slower.
    a0 = a0.view(dst_w, 1).expand(dst_w, c).reshape(1, 1, dst_w * c)
    a1 = a1.view(dst_w, 1).expand(dst_w, c).reshape(1, 1, dst_w * c)
    # In place from here: these are fresh int32 buffers, and the passes are memory-bound.
    horizontal = left.mul_(a0).add_(right.mul_(a1))
    beta = torch.cat([b0, b1]).view(1, 2 * dst_h, 1)
    # OpenCV's vertical SIMD kernel: 16-bit high products of (h >> 4) and the row weight.
    part = horizontal.bitwise_right_shift_(4).mul_(beta).bitwise_right_shift_(16)
    total = part[:, :dst_h] + part[:, dst_h:]
    out = total.add_(2).bitwise_right_shift_(2).clamp_max_(255)  # never < 0: weights are >= 0
    return out.to(torch.uint8).view(n, dst_h, dst_w, c)
