"""The network half of the deployable module, what a .pt2 package compiles; and its frame half,
which the runtime runs around it at any frame size.

A frame's cost splits in two. The network runs at the network input size, which depends only on
the frame's aspect ratio (keep-ratio test scale: every 16:9 frame gives the same size). The exact
uint8 resize in and the labels out depend on the frame's own size, and are cheap, simple
loops. So a package compiles the network for fixed network input sizes (fast code; a handful
covers the cameras people own), holds it as a frozen TorchScript module for every other size
(Inductor's dynamic-shape code ran the demo's network 2.3x slower than fixed-size code, TorchScript
1.3x), and the frame work stays outside, generic in the frame size: here in eager torch, in C++
in cpp/src/frame_work.cpp, both bit for bit what SegmentationModule computes.

    NetworkModel:  uint8 BGR (N, h, w, 3) at the network size -> scores (N, C, h, w)
    run_frames:    uint8 BGR frames (N, H, W, 3) -> labels (N, H, W), through any NetworkModel

The per-cell labels (`network_cells`: top-2 over the classes, which cells are sure) run outside
the compiled code too: fused into the network's last kernel they tripled Inductor's compile time
(85 s against 33 s for the demo at 256x512) for about a millisecond of work.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..frame_labels import labels_from_cells, network_cells
from ..inference import preprocess, rescale_size, resize
from ..resize import resize_uint8_like_cv2
from .module import MIN_SIZE


class NetworkModel(nn.Module):
    """The deployable module's network at the network input size: normalisation, then whole or
    sliding-window inference.

    `module` is a SegmentationModule (or one with the same `seg`, `mean`, `std` and `bgr_to_rgb`,
    e.g. its int8 copy); flip averaging is not a network-size computation."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if getattr(module, "flip", False):
            raise ValueError("flip averaging has no network-size form; export it to a .pt file")
        self.module = module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = self.module
        return m.seg(preprocess(images, m.mean, m.std, m.bgr_to_rgb))        # (N, C, h, w)


def network_size(resize: dict[str, Any], h: int, w: int) -> tuple[int, int]:
    """The network input size of an (h, w) frame under metadata.json's "resize" (the same
    arithmetic as SegmentationModule.network_size and the C++ runtime's)."""
    kind = resize["type"]
    if kind == "scale":
        return rescale_size(h, w, tuple(resize["scale"]))
    if kind == "size":
        return int(resize["size"][0]), int(resize["size"][1])
    if kind == "short_side":
        factor = float(resize["short_side"]) / min(h, w)
        return int(h * factor + 0.5), int(w * factor + 0.5)
    return h, w


def aspect_ratio_sizes(resize: dict[str, Any], ratios: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The network input sizes of frames of the aspect ratios W:H (a frame of W*k x H*k for a large k,
    so that rounding picks what the cameras of that ratio give)."""
    sizes = []
    for rw, rh in ratios:
        k = max(1, 4096 // max(rw, rh))
        size = network_size(resize, rh * k, rw * k)
        if size not in sizes:
            sizes.append(size)
    return sizes


def run_frames(network: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
               net_size: tuple[int, int], align_corners: bool, label_dtype: torch.dtype) -> torch.Tensor:
    """Labels (N, H, W) of uint8 BGR frames (N, H, W, 3) through a network model for `net_size`."""
    scores = network(resize_uint8_like_cv2(images, net_size))
    size = (images.shape[1], images.shape[2])
    if tuple(size) == tuple(net_size):
        return scores.argmax(dim=1).to(label_dtype)
    return labels_from_cells(scores, network_cells(scores, label_dtype), size, align_corners, label_dtype)


def frame_probabilities(network: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                        net_size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """Softmax probabilities (N, C, H, W) float32 at the frame size, as SegmentationModule.probabilities."""
    scores = network(resize_uint8_like_cv2(images, net_size))
    return resize(scores, (images.shape[1], images.shape[2]), align_corners).softmax(dim=1).float()


def check_frames(images: torch.Tensor, meta: dict[str, Any]) -> tuple[int, int]:
    """The network size of a batch of frames, with the module's own errors for bad input."""
    if images.dim() != 4 or images.shape[3] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images N x H x W x 3 (BGR), got {images.dtype} {list(images.shape)}")
    if min(images.shape[:3]) < 1:
        raise ValueError(f"empty image batch {list(images.shape)}")
    size = network_size(meta["resize"], images.shape[1], images.shape[2])
    if min(size) < MIN_SIZE:
        raise ValueError(f"network input {size[0]}x{size[1]} is smaller than {MIN_SIZE}x{MIN_SIZE}")
    return size


def size_name(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def model_name(size: tuple[int, int]) -> str:
    """The package's name for the network model compiled for `size`."""
    return f"net_{size_name(size)}"
