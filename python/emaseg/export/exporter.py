"""Checkpoint -> scripted SegmentationModule -> file, guarded by a parity gate.

The file is written under a temporary name (emaseg.atomic), reloaded and compared with the eager
module on several frames; only if labels are identical and scores agree is it renamed into place.
"""
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from .. import __version__
from ..atomic import WriteError, atomic_open, atomic_path, check_output
from ..checkpoint import CheckpointError, file_sha256, load_model
from . import aoti
from .metadata import EXTRA_FILE, FORMAT, FORMAT_VERSION, encode, read_metadata
from .module import MIN_SIZE, ResizePolicy, SegmentationModule

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Eager and scripted run the same kernels, so float32 agrees to rounding (measured 0.0); the
# low-precision exports get a looser bound because scripting may fuse casts differently.
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 2e-2}
# Inductor fuses and reorders what eager runs op by op: float32 scores of a .pt2 agree to ~1e-6
# (measured 1.7e-7 on the demo model), so the TorchScript bounds hold for packages too.
PACKAGE_TOLERANCE = TOLERANCE
PARITY_SIZES = ((1, 97, 131), (2, 75, 102), (1, 120, 200))
# A package's frame size is symbolic: a portrait frame checks that no orientation got baked in.
PACKAGE_PARITY_SIZES = PARITY_SIZES + ((1, 150, 64),)


class ExportError(RuntimeError):
    """Export refused; the message says why and nothing was written."""


@dataclass
class ExportReport:
    output: Path
    metadata: dict[str, Any]
    parity: list[dict[str, Any]] = field(default_factory=list)
    seconds_per_frame: Optional[float] = None


def parity_frames(sizes=PARITY_SIZES, seed: int = 0) -> list[torch.Tensor]:
    """Deterministic uint8 BGR batches: smooth colour fields plus noise (not multiples of 8)."""
    g = torch.Generator().manual_seed(seed)
    frames = []
    for n, h, w in sizes:
        coarse = torch.rand(n, 3, max(h // 16, 2), max(w // 16, 2), generator=g) * 255
        smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        noisy = smooth + torch.randn(n, 3, h, w, generator=g) * 12
        frames.append(noisy.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous())
    return frames


def build_module(checkpoint: str | Path, *, mode: Optional[str], resize: Optional[ResizePolicy], flip: bool,
                 dtype: str, device: str) -> tuple[SegmentationModule, dict[str, Any]]:
    try:
        net = load_model(checkpoint)
    except CheckpointError as e:
        raise ExportError(str(e)) from e
    except ValueError as e:  # a config field this version does not know
        raise ExportError(f"{checkpoint}: unknown or invalid config: {e}") from e
    cfg = net.config
    if mode not in (None, "whole", "slide"):
        raise ExportError(f"unknown mode {mode!r}: choose whole or slide")
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ExportError(f"device {device} requested but CUDA is not available")
    if dtype == "float16" and not device.startswith("cuda"):
        raise ExportError("float16 needs --device cuda (CPU kernels lack float16); use bfloat16 on the CPU")
    resize = resize or ResizePolicy("scale", scale=cfg.data.test_scale)
    if resize.kind == "size" and min(resize.size) < MIN_SIZE:
        raise ExportError(f"--size {resize.size[0]}x{resize.size[1]} is too small for the network "
                          f"(at least {MIN_SIZE}x{MIN_SIZE})")
    if resize.kind == "short_side" and resize.short_side < MIN_SIZE:
        raise ExportError(f"--short-side {resize.short_side} is too small for the network (at least {MIN_SIZE})")
    module = SegmentationModule(net, cfg, resize, mode=mode, flip=flip).eval().to(device=device, dtype=DTYPES[dtype])
    if dtype == "bfloat16" and not device.startswith("cuda"):
        # oneDNN's bfloat16 convolutions are fast only on NHWC weights (measured ~1.8x over NCHW).
        module = module.to(memory_format=torch.channels_last)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config_name": cfg.name,
        "num_classes": cfg.model.num_classes,
        "class_names": list(net.class_names),
        "palette": [list(c) for c in net.palette],
        "mean": list(cfg.data.mean),
        "std": list(cfg.data.std),
        "bgr_to_rgb": cfg.data.bgr_to_rgb,
        "mode": mode or cfg.test.mode,
        "resize": resize.to_json(),
        "slide": {"crop_size": list(cfg.test.crop_size), "stride": list(cfg.test.stride)},
        "flip": flip,
        "align_corners": cfg.model.align_corners,
        "dtype": dtype,
        "label_dtype": "uint8" if cfg.model.num_classes <= 255 else "int64",
        "checkpoint_sha256": file_sha256(checkpoint),
        "torch_version": torch.__version__,
        "emaseg_version": __version__,
    }
    return module, meta


def script_module(module: SegmentationModule, optimize: bool) -> torch.jit.ScriptModule:
    scripted = torch.jit.script(module)
    if optimize:
        # Freezing folds BN into convs and inlines constants; the exported methods must survive it.
        scripted = torch.jit.freeze(scripted, preserved_attrs=["probabilities", "logits"])
    return scripted


def check_parity(eager: SegmentationModule, loaded: torch.jit.ScriptModule, frames: list[torch.Tensor],
                 tolerance: float, device: str) -> list[dict[str, Any]]:
    rows = []
    with torch.inference_mode():
        for f in frames:
            f = f.to(device)
            a_scores, b_scores = eager.logits(f).float(), loaded.logits(f).float()
            a_labels, b_labels = eager(f), loaded(f)
            rows.append({
                "shape": list(f.shape),
                "max_abs_score_diff": float((a_scores - b_scores).abs().max()),
                "labels_differ": int((a_labels != b_labels).sum()),
                "ok": bool(torch.equal(a_labels, b_labels) and float((a_scores - b_scores).abs().max()) <= tolerance),
            })
    return rows


def export_model(checkpoint: str | Path, output: str | Path, *, mode: Optional[str] = None,
                 resize: Optional[ResizePolicy] = None, flip: bool = False, dtype: str = "float32",
                 device: str = "cpu", optimize: bool = False, frames: Optional[list[torch.Tensor]] = None,
                 frame_size: Optional[tuple[int, int]] = None) -> ExportReport:
    """`frame_size` (.pt2 only): compile for frames of exactly (H, W) instead of any size."""
    output = Path(output)
    try:
        check_output(output, inputs=[checkpoint])
    except WriteError as e:
        raise ExportError(str(e)) from e
    if output.suffix not in (".pt", aoti.SUFFIX):
        raise ExportError(f"cannot write {output}: the suffix picks the format, .pt (TorchScript) or "
                          f".pt2 (AOTInductor package)")
    module, meta = build_module(checkpoint, mode=mode, resize=resize, flip=flip, dtype=dtype, device=device)
    if output.suffix == aoti.SUFFIX:
        if optimize:
            raise ExportError("--optimize is for TorchScript files; a .pt2 is always compiled with freezing")
        return _export_package(module, meta, output, dtype=dtype, device=device, frames=frames,
                               frame_size=frame_size)
    if frame_size is not None:
        raise ExportError("--frame-size is for .pt2 packages; a .pt file takes frames of any size")
    scripted = script_module(module, optimize)
    # torch.jit.save aborts the process (C++ exception, SIGABRT) when the disk fills; saving to
    # memory and writing the bytes with Python I/O turns that into a catchable OSError.
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer, _extra_files={EXTRA_FILE: encode(meta)})
    try:
        with atomic_open(output, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            del buffer
            # The gate checks the bytes on disk, read back, before the file gets its final name.
            loaded = torch.jit.load(f.name, map_location=device)
            read_metadata(f.name)
            rows = check_parity(module, loaded, frames or parity_frames(), TOLERANCE[dtype], device)
            if not all(r["ok"] for r in rows):
                report = "; ".join(f"{r['shape']}: max score diff {r['max_abs_score_diff']:.2e}, "
                                   f"{r['labels_differ']} labels differ" for r in rows)
                raise ExportError(f"parity gate failed (tolerance {TOLERANCE[dtype]:g}): {report}")
            timing = _time_per_frame(loaded, device)
    except WriteError as e:
        raise ExportError(str(e)) from e
    return ExportReport(output=output, metadata=meta, parity=rows, seconds_per_frame=timing)


def check_package_parity(eager: SegmentationModule, labels: Any, probabilities: Any, frames: list[torch.Tensor],
                         tolerance: float, device: str) -> list[dict[str, Any]]:
    """The compiled package against the eager module: probabilities within `tolerance`, and labels
    identical except at near-ties, pixels whose two labels' eager probabilities lie within
    `tolerance` of each other. Inductor reorders float sums (differences ~1e-6), which can flip
    such a pixel: 1 of the 2 million of a 1080p frame did."""
    rows = []
    with torch.inference_mode():
        for f in frames:
            f = f.to(device)
            a_labels, b_labels = eager(f), labels(f)
            a_probs, b_probs = eager.probabilities(f).float(), probabilities(f).float()
            # A package of another model may not even give the same shapes: it fails the gate.
            same_shapes = a_labels.shape == b_labels.shape and a_probs.shape == b_probs.shape
            diff = float((a_probs - b_probs).abs().max()) if same_shapes else float("inf")
            differ, near_ties = a_labels.numel(), 0
            if same_shapes:
                wrong = a_labels != b_labels
                differ = int(wrong.sum())
                if differ:
                    pa = a_probs.gather(1, a_labels.long().unsqueeze(1)).squeeze(1)[wrong]
                    pb = a_probs.gather(1, b_labels.long().unsqueeze(1)).squeeze(1)[wrong]
                    near_ties = int(((pa - pb).abs() <= tolerance).sum())
            rows.append({
                "shape": list(f.shape),
                "max_abs_score_diff": diff,
                "labels_differ": differ,
                "near_ties": near_ties,
                "ok": bool(same_shapes and differ == near_ties and diff <= tolerance),
            })
    return rows


def _export_package(module: SegmentationModule, meta: dict[str, Any], output: Path, *, dtype: str, device: str,
                    frames: Optional[list[torch.Tensor]], frame_size: Optional[tuple[int, int]]) -> ExportReport:
    """torch.export + AOTInductor into a temporary .pt2 beside `output`, gated like the .pt."""
    if frame_size is not None and min(frame_size) < MIN_SIZE:
        raise ExportError(f"--frame-size {frame_size[0]}x{frame_size[1]} is smaller than {MIN_SIZE}x{MIN_SIZE}")
    meta = {**meta, "format": aoti.FORMAT}
    example = aoti.package_input(frame_size).to(device)
    try:
        with atomic_path(output, suffix=aoti.SUFFIX) as tmp:
            fixed = aoti.compile_package(module, meta, tmp, example=example, dynamic=frame_size is None)
            meta["fixed_input"] = fixed
            if "H" in fixed or "W" in fixed:  # the gate can only feed what the package takes
                h, w = fixed.get("H", example.shape[1]), fixed.get("W", example.shape[2])
                sizes = [(fixed.get("N", 1), h, w)]
                frames = frames and [f for f in frames if tuple(f.shape[1:3]) == (h, w)] or parity_frames(sizes)
            labels, _ = aoti.load_package(tmp, device, "model")
            probabilities, _ = aoti.load_package(tmp, device, "probabilities")
            rows = check_package_parity(module, labels, probabilities, frames or parity_frames(PACKAGE_PARITY_SIZES),
                                        PACKAGE_TOLERANCE[dtype], device)
            if not all(r["ok"] for r in rows):
                report = "; ".join(f"{r['shape']}: max probability diff {r['max_abs_score_diff']:.2e}, "
                                   f"{r['labels_differ']} labels differ ({r['near_ties']} at near-ties)"
                                   for r in rows)
                raise ExportError(f"parity gate failed (tolerance {PACKAGE_TOLERANCE[dtype]:g}): {report}")
            timing = _time_per_frame(labels, device, sizes=fixed)
    except WriteError as e:
        raise ExportError(str(e)) from e
    except aoti.PackageError as e:
        raise ExportError(str(e)) from e
    return ExportReport(output=output, metadata=meta, parity=rows, seconds_per_frame=timing)


def _time_per_frame(module: Any, device: str, runs: int = 3, sizes: Optional[dict[str, int]] = None) -> float:
    sizes = sizes or {}
    frame = parity_frames(((sizes.get("N", 1), sizes.get("H", 120), sizes.get("W", 200)),), seed=1)[0].to(device)
    with torch.inference_mode():
        module(frame)  # warm-up: TorchScript profiles and optimises on the first calls
        module(frame)
        start = time.perf_counter()
        for _ in range(runs):
            module(frame)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / runs


def load_exported(path: str | Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """Loads an exported file (.pt or .pt2, told apart by content) and its metadata (checked).
    The first result maps uint8 BGR frames (N, H, W, 3) to labels, like the C++ runtime."""
    if aoti.is_package(path):
        try:
            return aoti.load_package(path, device)
        except aoti.PackageError as e:
            raise ExportError(str(e)) from e
    meta = read_metadata(path)
    return torch.jit.load(str(path), map_location=device), meta
