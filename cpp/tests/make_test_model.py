"""Write a tiny TorchScript model that obeys docs/model_file_format.md, for the runtime's tests.

The model classifies each pixel by its colour with a fixed 1x1 convolution into four classes
(background, red, green, blue), so its labels are easy to predict and identical wherever it runs.
It goes through the same path as a real export: uint8 NHWC BGR in, uint8 NHW labels out, a
`probabilities` method, and the `metadata.json` extra file.

    python cpp/tests/make_test_model.py OUT.pt [--work N] [--fail-after N] [--no-metadata]
        [--sample-image PNG]

`--work N` adds N fixed 128x128 matmuls per call whose result is multiplied by zero: a slow model
with the same labels, for tests that must interrupt a run part-way. `--fail-after N` makes
forward() raise from its (N+1)-th call on, for tests of a model that fails mid-run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

CLASS_NAMES = ["background", "red", "green", "blue"]
PALETTE = [[0, 0, 0], [220, 20, 60], [0, 160, 0], [30, 60, 230]]  # RGB
MEAN = [0.5, 0.5, 0.5]  # RGB, on the 0..1 scale
STD = [0.25, 0.25, 0.25]


class TinyColourSegmenter(nn.Module):
    """Per-pixel colour classifier with the exported model's interface."""

    def __init__(self, work: int = 0, fail_after: int = -1) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.calls = 0
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.classifier = nn.Conv2d(3, len(CLASS_NAMES), kernel_size=1)
        with torch.no_grad():
            # Normalised inputs lie in [-2, 2]; a channel wins when it stands out from the other
            # two, and dark or grey pixels fall back to background through its bias.
            self.classifier.weight.copy_(torch.tensor([
                [0.0, 0.0, 0.0],
                [2.0, -1.0, -1.0],
                [-1.0, 2.0, -1.0],
                [-1.0, -1.0, 2.0],
            ]).view(4, 3, 1, 1))
            self.classifier.bias.copy_(torch.tensor([1.5, 0.0, 0.0, 0.0]))
        self.work = work
        # Rows sum to one, so repeated products of a ones matrix stay finite.
        self.register_buffer("work_matrix", torch.full((128, 128), 1.0 / 128))

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).flip(1)  # (N, 3, H, W) RGB, uint8
        x = x.to(self.mean.dtype) / 255.0
        x = (x - self.mean) / self.std
        logits = self.classifier(x)  # (N, C, H, W)
        if self.work > 0:
            acc = torch.ones_like(self.work_matrix)
            for _ in range(self.work):
                acc = acc @ self.work_matrix
            logits = logits + 0.0 * acc.sum()
        return logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_after >= 0 and self.calls > self.fail_after:
            raise RuntimeError("injected failure: this test model fails after " + str(self.fail_after) + " calls")
        return self._logits(images).argmax(dim=1).to(torch.uint8)  # (N, H, W)

    @torch.jit.export
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return self._logits(images).float().softmax(dim=1)  # (N, C, H, W)


class TinyColourNetwork(nn.Module):
    """The tiny model's network half, what a .pt2 package holds (emaseg.export.network's contract:
    uint8 BGR frames at the network size in, scores out)."""

    def __init__(self) -> None:
        super().__init__()
        self.segmenter = TinyColourSegmenter()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.segmenter._logits(images)


def metadata(format_version: int = 1) -> dict:
    return {
        "format": "emaseg.torchscript",
        "format_version": format_version,
        "config_name": "tiny_colour_test",
        "num_classes": len(CLASS_NAMES),
        "class_names": CLASS_NAMES,
        "palette": PALETTE,
        "mean": MEAN,
        "std": STD,
        "mode": "whole",
        "resize": {"type": "none"},
        "slide": {"crop_size": [8, 8], "stride": [8, 8]},
        "flip": False,
        "align_corners": False,
        "dtype": "float32",
        "label_dtype": "uint8",
        "checkpoint_sha256": "0" * 64,
        "torch_version": torch.__version__,
        "emaseg_version": "test",
    }


def make_test_model(path: str | Path, *, work: int = 0, with_metadata: bool = True,
                    format_version: int = 1, fail_after: int = -1) -> Path:
    """Script the tiny model and save it to `path`; returns the path.

    Args:
        path: where to write the .pt file.
        work: extra matmuls per call, to make the model slow without changing its labels.
        with_metadata: write metadata.json (without it the file is not an ema-seg model).
        format_version: the metadata's format_version (the runtime reads only 1).
        fail_after: forward() raises from its (fail_after + 1)-th call on (-1: never), for tests
            of a model that fails mid-run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(TinyColourSegmenter(work=work, fail_after=fail_after).eval())
    extra = {"metadata.json": json.dumps(metadata(format_version))} if with_metadata else {}
    torch.jit.save(scripted, str(path), _extra_files=extra)
    return path


def sample_image(height: int = 48, width: int = 64):
    """A BGR uint8 image with a block of every class (numpy array)."""
    import numpy as np

    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, width // 4: width // 2] = (40, 40, 230)  # BGR red
    image[:, width // 2: 3 * width // 4] = (40, 200, 40)
    image[:, 3 * width // 4:] = (230, 60, 40)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="where to write the .pt file")
    parser.add_argument("--work", type=int, default=0, help="extra matmuls per call (slow model)")
    parser.add_argument("--no-metadata", action="store_true", help="omit metadata.json")
    parser.add_argument("--fail-after", type=int, default=-1, help="forward() raises after N calls")
    parser.add_argument("--sample-image", help="also write a sample BGR image (PNG) here")
    args = parser.parse_args()
    make_test_model(args.output, work=args.work, with_metadata=not args.no_metadata,
                    fail_after=args.fail_after)
    if args.sample_image:
        import cv2

        Path(args.sample_image).parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(args.sample_image, sample_image()):
            raise SystemExit(f"cannot write {args.sample_image}")


if __name__ == "__main__":
    main()
