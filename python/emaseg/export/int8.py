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

from ..data.datasets import is_image_file
from ..quiet import quiet_loggers

CALIBRATION_FRAMES = 32  # the calibration set: up to this many images of the folder
HELD_OUT_FRAMES = 8      # the gate's frames: up to this many others, never seen in calibration
MIN_FRAMES = 5  # at least one held out (every fifth)


class CalibrationError(ValueError):
    """No usable calibration images, or no torchao to quantise with: the message says why."""


def calibration_images(source: str | Path, frame_size: tuple[int, int] | None = None) -> tuple[
        list[np.ndarray], list[np.ndarray]]:
    """(calibration frames, held-out frames) from the images under `source` (a folder, searched
    recursively, e.g. a dataset root): BGR uint8, resized to `frame_size` (H, W) if given. Images
    are taken evenly over the sorted list; every fifth one is held out for the accuracy gate."""
    root = Path(source)
    if not root.is_dir():
        raise CalibrationError(f"--calibration {root}: not a folder of images")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p)
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


def quantize_network(module: nn.Module, frames: Sequence[np.ndarray], dynamic: bool) -> nn.Module:
    """A copy of the deployable `module` whose network (module.seg.net) has int8 convolutions,
    calibrated on the network inputs `frames` (uint8 BGR H x W x 3) give. Only the network is
    quantised: the quantizer would otherwise also wrap the resizes of the logits in
    quantise/dequantise pairs (slower, and less exact)."""
    import copy

    inputs: list[torch.Tensor] = []
    hook = module.seg.net.register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach().clone()))
    try:
        with torch.no_grad():
            for frame in frames:
                module.logits(torch.from_numpy(np.ascontiguousarray(frame))[None])
    finally:
        hook.remove()
    example = inputs[0]
    auto = torch.export.Dim.AUTO
    shapes = {"x": {2: auto, 3: auto}} if dynamic else None
    net = module.seg.net
    # Copy everything but the float network, which the quantised one replaces: deep-copying it
    # too held a third set of its weights for nothing (the memo maps it to a placeholder).
    quantized = copy.deepcopy(module, memo={id(net): nn.Identity()})
    quantized.seg.net = quantize(net, example, inputs, shapes)
    return quantized


def quantize(module: nn.Module, example: torch.Tensor, inputs: Sequence[torch.Tensor],
             dynamic_shapes: dict | None = None) -> nn.Module:
    """`module(x)` with int8 convolutions, calibrated on its own `inputs`."""
    # torchao's import logs a warning per CUDA kernel library a CPU build lacks, and torch one
    # about its enum: noise for the user, the CPU path needs neither.
    try:
        with quiet_loggers("torchao", "torch.utils._pytree"):
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as e:
        raise CalibrationError("--dtype int8 needs torchao (pip install torchao==0.18.0, or "
                               "pip install -e .[int8])") from e
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=dynamic_shapes)
        prepared = prepare_pt2e(program.module(), quantizer)
        for x in inputs:
            prepared(x)
        return convert_pt2e(prepared)
