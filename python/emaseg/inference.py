"""Inference building blocks shared by evaluation and export.

Everything here scripts with TorchScript, so the exported file runs exactly this code.
Images enter as uint8 (N, H, W, 3) BGR, the way OpenCV decodes them; as in the reference's test
pipeline (mmcv `imresize`), they are resized in uint8 with OpenCV's bilinear rounding, then normalised.
"""
import math
from typing import TYPE_CHECKING, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .frame_labels import frame_labels
from .resize import _exporting, resize_uint8_like_cv2

if TYPE_CHECKING:  # only for the annotation: keeps this module free of config imports when scripted
    from .config import Config


def preprocess(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, bgr_to_rgb: bool) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised (N, 3, H, W) in the dtype of `mean`."""
    x = images.permute(0, 3, 1, 2)                        # (N, 3, H, W)
    if bgr_to_rgb:
        x = x.flip(1)
    x = x.to(mean.dtype)
    # Contiguous NCHW: a channels-last input would take other conv kernels and round differently.
    x = x.contiguous()
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def network_input(images: torch.Tensor, size: Tuple[int, int], mean: torch.Tensor, std: torch.Tensor,
                  bgr_to_rgb: bool) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised (N, 3, h, w) at `size`: the reference resizes the uint8 frame
    (cv2.resize INTER_LINEAR) before normalising, which is also ~10x cheaper than the other way round."""
    return preprocess(resize_uint8_like_cv2(images, size), mean, std, bgr_to_rgb)


def rescale_size(h: int, w: int, scale: Tuple[int, int]) -> Tuple[int, int]:
    """mmcv's keep-ratio rescale: long edge <= max(scale) and short edge <= min(scale), each side
    int(side * factor + 0.5) in floats, as mmcv rounds (ties such as 298x596 -> 666.5 included).
    math.floor, not int(): equal for these positive sizes, and torch.export keeps floor of a
    symbolic size symbolic where int() silently fixes it to the example's value."""
    long_edge, short_edge = max(scale[0], scale[1]), min(scale[0], scale[1])
    if torch.jit.is_scripting() or not _exporting():
        factor = min(long_edge / max(h, w), short_edge / min(h, w))
    else:
        factor = _symbolic_min(long_edge / _symbolic_max(h, w), short_edge / _symbolic_min(h, w))
    return math.floor(h * factor + 0.5), math.floor(w * factor + 0.5)


# Under torch.export, min/max of the frame size would branch on h < w and pin the size to the
# example's orientation; symbolic min/max keep it one expression, valid for every frame size.
@torch.jit.unused
def _symbolic_min(a: float, b: float) -> float:
    return torch.sym_min(a, b)


@torch.jit.unused
def _symbolic_max(a: int, b: int) -> int:
    return torch.sym_max(a, b)


@torch.jit.unused
def _dense_only(images: torch.Tensor) -> bool:
    """Where `frame_labels` cannot run: ONNX (its data-dependent gathers have no ONNX form; ORT runs
    the reference's dense resize and argmax) and the meta device (FLOP counting has no values)."""
    return images.device.type == "meta" or torch.onnx.is_in_onnx_export()


def resize(x: torch.Tensor, size: Tuple[int, int], align_corners: bool) -> torch.Tensor:
    if x.shape[2] == size[0] and x.shape[3] == size[1]:
        return x
    return F.interpolate(x, size=[size[0], size[1]], mode="bilinear", align_corners=align_corners)


def labels_from_scores(scores: torch.Tensor, label_dtype: torch.dtype) -> torch.Tensor:
    """`scores.argmax(dim=1)` in `label_dtype`: the same labels (first index on ties, NaN counts as
    the maximum), computed as a running maximum over the C planes. argmax over dim 1 of a large NCHW
    tensor reduces across strided memory: at 1080p with 19 classes 250 ms against ~80 ms, one thread.
    (A channels-last resize of the logits would make argmax cheap but round differently.)"""
    if not torch.jit.is_scripting() and _exporting():
        return scores.argmax(dim=1).to(label_dtype)  # the compiler fuses its own reduction
    if scores.device.type == "meta":  # shape propagation (FLOP counting): no values to test for NaN
        return scores.argmax(dim=1).to(label_dtype)
    scores = scores.detach()  # labels carry no gradient; out= below refuses tensors that require one
    best = scores[:, 0].clone()
    labels = torch.zeros(best.shape, dtype=label_dtype, device=scores.device)
    for k in range(1, scores.shape[1]):
        plane = scores[:, k]
        labels.masked_fill_(plane > best, k)  # strict: an equal later score keeps the first index
        torch.maximum(best, plane, out=best)
    if bool(best.isnan().any()):  # maximum propagated a NaN: let argmax place it exactly
        return scores.argmax(dim=1).to(label_dtype)
    return labels


def slide_windows(h: int, w: int, crop: Tuple[int, int], stride: Tuple[int, int]) -> List[Tuple[int, int, int, int]]:
    """The reference's window grid (y1, y2, x1, x2); the last window of a row/column is clamped to the image."""
    h_grids = max(h - crop[0] + stride[0] - 1, 0) // stride[0] + 1
    w_grids = max(w - crop[1] + stride[1] - 1, 0) // stride[1] + 1
    windows: List[Tuple[int, int, int, int]] = []
    for hi in range(h_grids):
        for wi in range(w_grids):
            y2 = min(hi * stride[0] + crop[0], h)
            x2 = min(wi * stride[1] + crop[1], w)
            windows.append((max(y2 - crop[0], 0), y2, max(x2 - crop[1], 0), x2))
    return windows


class SegInference(nn.Module):
    """Normalised images (N, 3, H, W) -> logits (N, C, H, W), whole-image or sliding-window.

    Args:
        net: the segmentor; `net(x)["out"]` gives logits at 1/8.
        num_classes: logits channels.
        align_corners: of every logits resize (the config's).
        mode: "whole" or "slide".
        crop_size, stride: slide window (H, W).
    """

    def __init__(self, net: nn.Module, *, num_classes: int, align_corners: bool, mode: str = "whole",
                 crop_size: Tuple[int, int] = (769, 769), stride: Tuple[int, int] = (513, 513)) -> None:
        super().__init__()
        if mode not in ("whole", "slide"):
            raise ValueError(f"inference mode must be 'whole' or 'slide', got {mode!r}")
        self.net = net
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.slide = mode == "slide"
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.stride = (int(stride[0]), int(stride[1]))

    def whole(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)["out"]
        return resize(logits, (x.shape[2], x.shape[3]), self.align_corners)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.slide:
            return self.whole(x)
        n, _, h, w = x.shape
        preds = torch.zeros(n, self.num_classes, h, w, dtype=x.dtype, device=x.device)
        count = torch.zeros(1, 1, h, w, dtype=x.dtype, device=x.device)
        for y1, y2, x1, x2 in slide_windows(h, w, self.crop_size, self.stride):
            preds[:, :, y1:y2, x1:x2] += self.whole(x[:, :, y1:y2, x1:x2])
            count[:, :, y1:y2, x1:x2] += 1
        return preds / count

    @torch.jit.export
    def scores(self, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, bgr_to_rgb: bool,
               sizes: List[Tuple[int, int]], flip: bool) -> torch.Tensor:
        """Scores (N, C, H, W) at the size of the uint8 frames `images` (N, H, W, 3), each pass on the
        frames resized to one of `sizes` then normalised (`network_input`). One pass: logits.
        Several (scales and/or flip): the mean softmax, as the reference merges them."""
        h, w = images.shape[1], images.shape[2]
        if len(sizes) == 1 and not flip:
            x = network_input(images, sizes[0], mean, std, bgr_to_rgb)
            return resize(self.forward(x), (h, w), self.align_corners)
        total = torch.zeros(images.shape[0], self.num_classes, h, w, dtype=mean.dtype, device=images.device)
        passes = 0
        for size in sizes:
            # Every scale from the original frame, and flip after the resize, as the reference's TTA.
            xs = network_input(images, size, mean, std, bgr_to_rgb)
            total += resize(self.forward(xs), (h, w), self.align_corners).softmax(dim=1)
            passes += 1
            if flip:
                total += resize(self.forward(xs.flip(3)).flip(3), (h, w), self.align_corners).softmax(dim=1)
                passes += 1
        return total / passes

    @torch.jit.export
    def labels(self, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, bgr_to_rgb: bool,
               sizes: List[Tuple[int, int]], flip: bool, label_dtype: torch.dtype) -> torch.Tensor:
        """argmax of `scores(...)` over classes, (N, H, W) in `label_dtype`. One pass: from the
        scores at the network size (`frame_labels`: the dense resize only where the label is in
        doubt). Several: the mean softmax is not a combination of network-size vectors, so dense."""
        if len(sizes) == 1 and not flip and (torch.jit.is_scripting() or not _dense_only(images)):
            x = network_input(images, sizes[0], mean, std, bgr_to_rgb)
            return frame_labels(self.forward(x), (images.shape[1], images.shape[2]), self.align_corners,
                                label_dtype)
        return labels_from_scores(self.scores(images, mean, std, bgr_to_rgb, sizes, flip), label_dtype)


def aug_sizes(h: int, w: int, test_scale: Optional[Tuple[int, int]], ratios: List[float]) -> List[Tuple[int, int]]:
    """Network input sizes: the test resize of (h, w), then each multi-scale ratio of it."""
    base = rescale_size(h, w, test_scale) if test_scale is not None else (h, w)
    return [(int(base[0] * r + 0.5), int(base[1] * r + 0.5)) for r in ratios]


def _inference(model: nn.Module, images: torch.Tensor, cfg: "Config", mode: Optional[str]
               ) -> Tuple[SegInference, torch.Tensor, torch.Tensor]:
    seg = SegInference(model, num_classes=cfg.model.num_classes, align_corners=cfg.model.align_corners,
                       mode=mode or cfg.test.mode, crop_size=cfg.test.crop_size, stride=cfg.test.stride)
    param = next(model.parameters())
    mean = torch.tensor(cfg.data.mean, dtype=param.dtype, device=images.device)
    std = torch.tensor(cfg.data.std, dtype=param.dtype, device=images.device)
    return seg, mean, std


def predict_labels(model: nn.Module, images: torch.Tensor, cfg: "Config", aug_ratios: Optional[List[float]] = None,
                   flip: bool = False, mode: Optional[str] = None) -> torch.Tensor:
    """The labels (N, H, W) int64 of `predict_logits`'s scores, as the exported file computes them."""
    seg, mean, std = _inference(model, images, cfg, mode)
    sizes = aug_sizes(images.shape[1], images.shape[2], cfg.data.test_scale, aug_ratios or [1.0])
    return seg.labels(images, mean, std, cfg.data.bgr_to_rgb, sizes, flip, torch.int64)


def predict_logits(model: nn.Module, images: torch.Tensor, cfg: "Config", aug_ratios: Optional[List[float]] = None,
                   flip: bool = False, mode: Optional[str] = None) -> torch.Tensor:
    """Eager test path for uint8 BGR images (N, H, W, 3): the config's test resize, whole or
    slide inference, optional multi-scale ratios and flip. Returns scores (N, C, H, W) at the
    image size: logits for one pass, mean softmax for several. The exported file runs the
    same code (`SegmentationModule`)."""
    seg, mean, std = _inference(model, images, cfg, mode)
    sizes = aug_sizes(images.shape[1], images.shape[2], cfg.data.test_scale, aug_ratios or [1.0])
    return seg.scores(images, mean, std, cfg.data.bgr_to_rgb, sizes, flip)
