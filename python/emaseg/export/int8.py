"""INT8 post-training quantisation of the deployable module (PT2E, torchao's X86InductorQuantizer).

The module is exported with torch.export, its convolutions annotated by the x86 quantizer
(int8 activations per tensor, int8 weights per channel: oneDNN's VNNI kernels), observed on
calibration frames, converted, and compiled by AOTInductor with freezing, which folds the
quantise/dequantise pairs into int8 convolutions (without freezing they run as float32).
Pre-processing, the logits' resize and argmax stay float32, exactly as in the float export.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch import nn

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CALIBRATION_FRAMES = 32  # the calibration set: up to this many images of the folder
HELD_OUT_FRAMES = 8      # the gate's frames: up to this many others, never seen in calibration
MIN_FRAMES = 5  # at least one held out (every fifth)


class CalibrationError(ValueError):
    """No usable calibration images: the message says what was found."""


def calibration_images(source: str | Path, frame_size: tuple[int, int] | None = None) -> tuple[
        list[np.ndarray], list[np.ndarray]]:
    """(calibration frames, held-out frames) from the images under `source` (a folder, searched
    recursively, e.g. a dataset root): BGR uint8, resized to `frame_size` (H, W) if given. Images
    are taken evenly over the sorted list; every fifth one is held out for the accuracy gate."""
    root = Path(source)
    if not root.is_dir():
        raise CalibrationError(f"--calibration {root}: not a folder of images")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and "label" not in p.name.lower())  # dataset roots hold label maps beside the images
    if len(paths) < MIN_FRAMES:
        raise CalibrationError(f"--calibration {root}: {len(paths)} image(s) found, at least {MIN_FRAMES} "
                               f"needed (a few dozen frames like the ones the model will see)")
    want = min(len(paths), CALIBRATION_FRAMES + HELD_OUT_FRAMES)
    picked = [paths[round(i * (len(paths) - 1) / max(want - 1, 1))] for i in range(want)]
    calibration, held_out = [], []
    for i, path in enumerate(dict.fromkeys(picked)):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise CalibrationError(f"--calibration: {path} is not a readable image")
        if frame_size is not None and image.shape[:2] != tuple(frame_size):
            image = cv2.resize(image, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_AREA)
        (held_out if i % 5 == 4 else calibration).append(image)
    return calibration, held_out


def quantize(module: nn.Module, example: torch.Tensor, frames: Sequence[np.ndarray],
             dynamic_shapes: dict | None = None) -> nn.Module:
    """`module(images)` with int8 convolutions, calibrated on `frames` (uint8 BGR H x W x 3)."""
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as e:
        raise RuntimeError("int8 export needs torchao (pip install torchao==0.18.0)") from e
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=dynamic_shapes)
        prepared = prepare_pt2e(program.module(), quantizer)
        for frame in frames:
            prepared(torch.from_numpy(np.ascontiguousarray(frame))[None])
        return convert_pt2e(prepared)


class LabelsOf(nn.Module):
    """Labels as argmax of a probabilities module: one quantised graph serves both outputs, so
    a package's labels and probabilities always agree."""

    def __init__(self, probabilities: nn.Module, label_dtype: torch.dtype) -> None:
        super().__init__()
        self.probabilities = probabilities
        self.label_dtype = label_dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.probabilities(images).argmax(dim=1).to(self.label_dtype)
