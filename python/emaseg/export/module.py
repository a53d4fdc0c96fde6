"""The deployable module: uint8 BGR frames in, labels (or probabilities) out, everything between inside.

It scripts with TorchScript; its contract is `docs/model_file_format.md`.
"""
import math
from typing import List, Optional, Tuple

import torch
from torch import nn

from ..config import Config
from ..inference import SegInference, _symbolic_min, rescale_size
from ..resize import _exporting

MIN_SIZE = 8  # one feature pixel at output stride 8


class ResizePolicy:
    """How a frame is resized before the network: the config's keep-ratio scale, a fixed size,
    a short side, or not at all."""

    def __init__(self, kind: str, scale: Tuple[int, int] = (0, 0), size: Tuple[int, int] = (0, 0),
                 short_side: int = 0) -> None:
        if kind not in ("scale", "size", "short_side", "none"):
            raise ValueError(f"unknown resize kind {kind!r}")
        self.kind, self.scale, self.size, self.short_side = kind, scale, size, short_side

    def to_json(self) -> dict:
        if self.kind == "scale":
            return {"type": "scale", "scale": list(self.scale)}
        if self.kind == "size":
            return {"type": "size", "size": list(self.size)}
        if self.kind == "short_side":
            return {"type": "short_side", "short_side": self.short_side}
        return {"type": "none"}


class SegmentationModule(nn.Module):
    """Args:
        net: the EMANet in eval mode.
        cfg: its config (normalisation, align_corners, inference mode, slide window).
        resize: the test resize policy.
        mode: "whole" or "slide" (defaults to the config's).
        flip: average the softmax of the frame and its mirror image.
    """

    def __init__(self, net: nn.Module, cfg: Config, resize: ResizePolicy, *, mode: Optional[str] = None,
                 flip: bool = False) -> None:
        super().__init__()
        mode = mode or cfg.test.mode
        self.seg = SegInference(net, num_classes=cfg.model.num_classes, align_corners=cfg.model.align_corners,
                                mode=mode, crop_size=cfg.test.crop_size, stride=cfg.test.stride)
        self.register_buffer("mean", torch.tensor(cfg.data.mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(cfg.data.std, dtype=torch.float32))
        self.bgr_to_rgb = cfg.data.bgr_to_rgb
        self.flip = flip
        self.resize_kind = resize.kind
        self.scale = (int(resize.scale[0]), int(resize.scale[1]))
        self.size = (int(resize.size[0]), int(resize.size[1]))
        self.short_side = int(resize.short_side)
        self.label_uint8 = cfg.model.num_classes <= 255
        self.min_size = MIN_SIZE

    def network_size(self, h: int, w: int) -> Tuple[int, int]:
        if self.resize_kind == "scale":
            return rescale_size(h, w, self.scale)
        if self.resize_kind == "size":
            return self.size
        if self.resize_kind == "short_side":
            short = min(h, w) if torch.jit.is_scripting() or not _exporting() else _symbolic_min(h, w)
            factor = float(self.short_side) / short
            return math.floor(h * factor + 0.5), math.floor(w * factor + 0.5)
        return h, w

    def _check(self, images: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[3] != 3:
            raise ValueError(f"expected uint8 images N x H x W x 3 (BGR), got shape {list(images.shape)}")
        if images.dtype != torch.uint8:
            raise ValueError("expected uint8 images N x H x W x 3 (BGR), got another dtype")
        if images.shape[0] < 1 or images.shape[1] < 1 or images.shape[2] < 1:
            raise ValueError(f"empty image batch {list(images.shape)}")

    def _sizes(self, images: torch.Tensor) -> List[Tuple[int, int]]:
        """The network input size of these frames, checked."""
        self._check(images)
        size = self.network_size(images.shape[1], images.shape[2])
        if size[0] < self.min_size or size[1] < self.min_size:
            raise ValueError(f"network input {size[0]}x{size[1]} is smaller than {self.min_size}x{self.min_size}")
        return [size]

    def _scores(self, images: torch.Tensor) -> torch.Tensor:
        """At the frame size: logits, or with flip the mean probabilities."""
        return self.seg.scores(images, self.mean, self.std, self.bgr_to_rgb, self._sizes(images), self.flip)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        dtype = torch.uint8 if self.label_uint8 else torch.int64
        return self.seg.labels(images, self.mean, self.std, self.bgr_to_rgb, self._sizes(images), self.flip,
                               dtype)                                                # (N, H, W)

    @torch.jit.export
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """What argmax is taken over, at the frame size: logits, or with flip the mean softmax."""
        return self._scores(images).float()                                          # (N, C, H, W)

    @torch.jit.export
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        scores = self._scores(images)
        probs = scores if self.flip else scores.softmax(dim=1)
        return probs.float()                                           # (N, C, H, W)
