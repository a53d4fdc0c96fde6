"""Checkpoint -> scripted SegmentationModule -> file, guarded by a parity gate.

The file is written under a temporary name (emaseg.atomic), reloaded and compared with the eager
module on several frames; only if labels are identical and scores agree is it renamed into place.
"""
import io
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from .. import __version__
from ..atomic import WriteError, atomic_open, atomic_path, check_output
from ..checkpoint import CheckpointError, file_sha256, load_model
from . import aoti
from ..frame_labels import near_tie_count
from .metadata import EXTRA_FILE, FORMAT, FORMAT_VERSION, encode, read_metadata
from .module import MIN_SIZE, ResizePolicy, SegmentationModule

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Eager and scripted run the same kernels, so float32 agrees to rounding (measured 0.0); the
# low-precision exports get a looser bound because scripting may fuse casts differently.
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 2e-2}
# Inductor fuses and reorders what eager runs op by op: float32 scores of a .pt2 agree to ~1e-6
# (measured 1.7e-7 on the demo model), so the TorchScript bound holds for float32 packages.
PACKAGE_TOLERANCE = TOLERANCE
# A low-precision package is gated against the float32 module, since Inductor keeps bfloat16
# intermediates in float32 inside fused kernels where eager rounds after every op (so it is
# closer to float32 than eager bfloat16 is). Labels: at least this share equal to float32's on
# the gate's noise frames, which hold far more near-ties than real frames (the demo model: 99.4%
# at 256x512 and 98.8% at 1080p, where street scenes give 99.5%); probabilities within
# LOW_PRECISION_PROBABILITY (a label can only flip where two classes are this close).
LOW_PRECISION_AGREEMENT = 0.98
LOW_PRECISION_PROBABILITY = 0.1
# int8 is gated on held-out calibration images (the user's own domain, never seen by the
# observers) against float32: every frame at least INT8_MIN_AGREEMENT of labels equal, and
# INT8_MEAN_AGREEMENT on average. The demo model measured 98.7% mean, 97.6% worst (16
# calibration scenes); a quantisation gone wrong (a layer's scale off) lands far below.
INT8_MEAN_AGREEMENT = 0.97
INT8_MIN_AGREEMENT = 0.95
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
            # The labels skip the dense resize where they are sure (emaseg.frame_labels): against
            # the dense argmax they may differ only where two classes' scores are within the tolerance.
            differ, near_ties = near_tie_count(a_scores, b_labels, tolerance)
            rows.append({
                "shape": list(f.shape),
                "max_abs_score_diff": float((a_scores - b_scores).abs().max()),
                "labels_differ": int((a_labels != b_labels).sum()),
                "dense_differ": differ,
                "near_ties": near_ties,
                "ok": bool(torch.equal(a_labels, b_labels) and differ == near_ties
                           and float((a_scores - b_scores).abs().max()) <= tolerance),
            })
    return rows


def export_model(checkpoint: str | Path, output: str | Path, *, mode: Optional[str] = None,
                 resize: Optional[ResizePolicy] = None, flip: bool = False, dtype: str = "float32",
                 device: str = "cpu", optimize: bool = False, frames: Optional[list[torch.Tensor]] = None,
                 frame_size: Optional[tuple[int, int]] = None,
                 calibration: Optional[str | Path] = None,
                 frame_sizes: tuple[tuple[int, int], ...] = ()) -> ExportReport:
    """`frame_size` (.pt2 only): compile for frames of exactly (H, W) instead of any size.
    `frame_sizes` (float .pt2 only): also compile one model for frames of exactly each (H, W), which
    the runtime takes for frames of that size.
    `dtype="int8"` (.pt2 only): post-training quantisation calibrated on the images under the
    folder `calibration`."""
    output = Path(output)
    try:
        check_output(output, inputs=[checkpoint])
    except WriteError as e:
        raise ExportError(str(e)) from e
    if output.suffix not in (".pt", aoti.SUFFIX, ".onnx"):
        raise ExportError(f"cannot write {output}: the suffix picks the format, .pt (TorchScript), "
                          f".pt2 (AOTInductor package) or .onnx")
    if frame_sizes and (output.suffix != aoti.SUFFIX or dtype == "int8"):
        raise ExportError("--frame-sizes is for float .pt2 packages")
    if any(min(size) < MIN_SIZE for size in frame_sizes):
        raise ExportError(f"--frame-sizes: every size must be at least {MIN_SIZE}x{MIN_SIZE}")
    if dtype == "int8":
        return _export_int8(checkpoint, output, mode=mode, resize=resize, flip=flip, device=device,
                            optimize=optimize, frame_size=frame_size, calibration=calibration)
    if calibration is not None:
        raise ExportError("--calibration is for --dtype int8")
    module, meta = build_module(checkpoint, mode=mode, resize=resize, flip=flip, dtype=dtype, device=device)
    if output.suffix == ".onnx":
        if dtype != "float32" or device != "cpu" or optimize:
            raise ExportError("an .onnx file is exported in float32 on the CPU, without --optimize (ONNX Runtime "
                              "optimises it when it loads)")
        return _export_onnx(module, meta, output, frames=frames, frame_size=frame_size)
    if output.suffix == aoti.SUFFIX:
        if optimize:
            raise ExportError("--optimize is for TorchScript files; a .pt2 is always compiled with freezing")
        reference = module
        if dtype != "float32":
            reference, _ = build_module(checkpoint, mode=mode, resize=resize, flip=flip, dtype="float32",
                                        device=device)
        return _export_package(module, meta, output, dtype=dtype, device=device, frames=frames,
                               frame_size=frame_size, reference=reference, frame_sizes=tuple(frame_sizes))
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
                         tolerance: float, device: str, min_agreement: Optional[float] = None) -> list[dict[str, Any]]:
    """The compiled package against the eager module: probabilities within `tolerance`, and labels
    identical except at near-ties, pixels whose two labels' eager probabilities lie within
    `tolerance` of each other. Inductor reorders float sums (differences ~1e-6), which can flip
    such a pixel: 1 of the 2 million of a 1080p frame did. With `min_agreement` (a low-precision
    package against the float32 module) that share of labels must be equal instead."""
    rows = []
    with torch.inference_mode():
        for f in frames:
            f = f.to(device)
            # The reference is the dense path: argmax of the frame-size scores.
            a_labels, b_labels = eager.logits(f).argmax(dim=1), labels(f)
            a_probs = eager.probabilities(f).float()
            b_probs = probabilities(f).float() if probabilities is not None else a_probs  # None: labels only
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
            agreement = 1.0 - differ / max(a_labels.numel(), 1)
            labels_ok = differ == near_ties if min_agreement is None else agreement >= min_agreement
            rows.append({
                "shape": list(f.shape),
                "max_abs_score_diff": diff,
                "labels_differ": differ,
                "near_ties": near_ties,
                "agreement": agreement,
                "ok": bool(same_shapes and labels_ok and diff <= tolerance),
            })
    return rows


def _export_package(module: SegmentationModule, meta: dict[str, Any], output: Path, *, dtype: str, device: str,
                    frames: Optional[list[torch.Tensor]], frame_size: Optional[tuple[int, int]],
                    reference: SegmentationModule, frame_sizes: tuple[tuple[int, int], ...] = ()) -> ExportReport:
    """torch.export + AOTInductor into a temporary .pt2 beside `output`, gated like the .pt: against
    `reference`, the float32 module (for a float32 package, `module` itself)."""
    if frame_size is not None and min(frame_size) < MIN_SIZE:
        raise ExportError(f"--frame-size {frame_size[0]}x{frame_size[1]} is smaller than {MIN_SIZE}x{MIN_SIZE}")
    meta = {**meta, "format": aoti.FORMAT}
    example = aoti.package_input(frame_size).to(device)
    with _export_errors(), atomic_path(output, suffix=aoti.SUFFIX) as tmp:
        fixed = aoti.compile_package(module, meta, tmp, example=example, dynamic=frame_size is None,
                                     frame_sizes=frame_sizes)
        meta["fixed_input"] = fixed
        meta["frame_models"] = {f"{h}x{w}": aoti.frame_model_name((h, w)) for h, w in frame_sizes}
        if "H" in fixed or "W" in fixed:  # the gate can only feed what the package takes
            h, w = fixed.get("H", example.shape[1]), fixed.get("W", example.shape[2])
            sizes = [(fixed.get("N", 1), h, w)]
            frames = frames and [f for f in frames if tuple(f.shape[1:3]) == (h, w)] or parity_frames(sizes)
        labels, _ = aoti.load_package(tmp, device, "model")
        probabilities, _ = aoti.load_package(tmp, device, "probabilities")
        low = dtype != "float32"
        tolerance = LOW_PRECISION_PROBABILITY if low else PACKAGE_TOLERANCE[dtype]
        rows = check_package_parity(reference, labels, probabilities, frames or parity_frames(PACKAGE_PARITY_SIZES),
                                    tolerance, device, min_agreement=LOW_PRECISION_AGREEMENT if low else None)
        for size in frame_sizes:  # each fixed-size model on a frame of its size (labels only)
            compiled, _ = aoti.load_package(tmp, device, aoti.frame_model_name(size))
            rows += check_package_parity(reference, compiled, None, parity_frames(((1, *size),)), tolerance,
                                         device, min_agreement=LOW_PRECISION_AGREEMENT if low else None)
        if not all(r["ok"] for r in rows):
            if low:
                report = "; ".join(f"{r['shape']}: {r['agreement']:.2%} of labels equal to float32's, max "
                                   f"probability diff {r['max_abs_score_diff']:.2e}" for r in rows)
                raise ExportError(f"parity gate failed (at least {LOW_PRECISION_AGREEMENT:.0%} of labels equal "
                                  f"and probabilities within {tolerance:g}): {report}")
            report = "; ".join(f"{r['shape']}: max probability diff {r['max_abs_score_diff']:.2e}, "
                               f"{r['labels_differ']} labels differ ({r['near_ties']} at near-ties)"
                               for r in rows)
            raise ExportError(f"parity gate failed (tolerance {tolerance:g}): {report}")
        timing = _time_per_frame(labels, device, sizes=fixed)
    return ExportReport(output=output, metadata=meta, parity=rows, seconds_per_frame=timing)


def _export_onnx(module: SegmentationModule, meta: dict[str, Any], output: Path, *,
                 frames: Optional[list[torch.Tensor]], frame_size: Optional[tuple[int, int]]) -> ExportReport:
    """torch.onnx (dynamo) of the deployable module into a temporary .onnx beside `output`, metadata
    in metadata_props, gated through ONNX Runtime: labels identical to the eager module's but for
    near-ties (ORT sums in its own order, as Inductor does), on odd sizes and a portrait frame."""
    try:
        from .. import onnx
    except ImportError as e:
        raise ExportError(f"ONNX export needs onnx, onnxscript and onnxruntime ({e})") from e
    if frame_size is not None and min(frame_size) < MIN_SIZE:
        raise ExportError(f"--frame-size {frame_size[0]}x{frame_size[1]} is smaller than {MIN_SIZE}x{MIN_SIZE}")
    meta = {**meta, "format": "emaseg.onnx"}
    dynamic = frame_size is None
    example = aoti.package_input(frame_size)
    if frame_size is not None:
        frames = frames and [f for f in frames if tuple(f.shape[:3]) == (1, *frame_size)] or \
            parity_frames(((1, *frame_size),))
    frames = frames or parity_frames(PACKAGE_PARITY_SIZES)
    try:
        with atomic_path(output, suffix=".onnx") as tmp:
            try:
                info = onnx.export_onnx(module, example, tmp, "dynamo", dynamic=dynamic)
            except Exception as e:  # noqa: BLE001 - the exporter's own error, in one line
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ExportError(f"torch.onnx could not export the module: {first}" +
                                  ("; try --frame-size HxW for one fixed frame size" if dynamic else "")) from e
            meta["fixed_input"] = {} if dynamic else {"N": 1, "H": frame_size[0], "W": frame_size[1]}
            meta["onnx"] = {"opset": info["opset"], "exporter": info["exporter"]}
            onnx.write_metadata(tmp, meta)
            runner = onnx.OrtSegmenter(tmp, threads=torch.get_num_threads())
            rows = check_package_parity(module, lambda f: torch.from_numpy(runner.segment_batch(f.numpy())),
                                        None, frames, PACKAGE_TOLERANCE["float32"], "cpu")
            if not all(r["ok"] for r in rows):
                report = "; ".join(f"{r['shape']}: {r['labels_differ']} labels differ ({r['near_ties']} at "
                                   f"near-ties)" for r in rows)
                raise ExportError(f"parity gate failed (ONNX Runtime against the eager module): {report}")
            timing = _time_per_frame(lambda f: runner.segment_batch(f.numpy()), "cpu", sizes=meta["fixed_input"])
    except WriteError as e:
        raise ExportError(str(e)) from e
    return ExportReport(output=output, metadata=meta, parity=rows, seconds_per_frame=timing)


def _export_int8(checkpoint: str | Path, output: Path, *, mode: Optional[str], resize: Optional[ResizePolicy],
                 flip: bool, device: str, optimize: bool, frame_size: Optional[tuple[int, int]],
                 calibration: Optional[str | Path]) -> ExportReport:
    """PT2E int8 quantisation (emaseg.export.int8) compiled into a .pt2, gated on held-out
    calibration images against the float32 module."""
    from . import int8

    if output.suffix != aoti.SUFFIX:
        raise ExportError("--dtype int8 writes a .pt2 package (AOTInductor runs the int8 kernels)")
    if device != "cpu":
        raise ExportError("--dtype int8 is for the CPU (x86 VNNI kernels); use float16 on CUDA")
    if optimize:
        raise ExportError("--optimize is for TorchScript files; a .pt2 is always compiled with freezing")
    if calibration is None:
        raise ExportError("--dtype int8 needs --calibration DIR: a folder of a few dozen images like the "
                          "frames the model will see")
    if frame_size is not None and min(frame_size) < MIN_SIZE:
        raise ExportError(f"--frame-size {frame_size[0]}x{frame_size[1]} is smaller than {MIN_SIZE}x{MIN_SIZE}")
    try:
        calib, held_out = int8.calibration_images(calibration, frame_size)
    except int8.CalibrationError as e:
        raise ExportError(str(e)) from e
    reference, meta = build_module(checkpoint, mode=mode, resize=resize, flip=flip, dtype="float32", device=device)
    meta = {**meta, "format": aoti.FORMAT, "dtype": "int8",
            "calibration": {"frames": len(calib), "held_out": len(held_out), "folder": Path(calibration).name}}
    example = aoti.package_input(frame_size)
    dynamic = frame_size is None
    with _export_errors(), atomic_path(output, suffix=aoti.SUFFIX) as tmp:
        try:
            quantized = int8.quantize_network(reference, calib, dynamic)
        except int8.CalibrationError as e:
            raise ExportError(str(e)) from e
        fixed = aoti.compile_package(quantized, meta, tmp, example=example, dynamic=dynamic)
        meta["fixed_input"] = fixed
        labels, _ = aoti.load_package(tmp, device, "model")
        compiled_probs, _ = aoti.load_package(tmp, device, "probabilities")
        frames = [torch.from_numpy(f)[None] for f in held_out]
        rows = check_package_parity(reference, labels, compiled_probs, frames, 1.0, device, min_agreement=0.0)
        mean = sum(r["agreement"] for r in rows) / len(rows)
        worst = min(r["agreement"] for r in rows)
        if mean < INT8_MEAN_AGREEMENT or worst < INT8_MIN_AGREEMENT:
            raise ExportError(f"int8 accuracy gate failed: on {len(rows)} held-out calibration images "
                              f"{mean:.2%} of labels equal to float32's on average (at least "
                              f"{INT8_MEAN_AGREEMENT:.0%} needed), {worst:.2%} on the worst (at least "
                              f"{INT8_MIN_AGREEMENT:.0%}); calibrate on more, or more typical, frames")
        timing = _time_per_frame(labels, device, sizes=fixed)
    return ExportReport(output=output, metadata=meta, parity=rows, seconds_per_frame=timing)


@contextmanager
def _export_errors() -> Iterator[None]:
    """A full disk (WriteError) or an unusable package (PackageError) as the one-line ExportError."""
    try:
        yield
    except (WriteError, aoti.PackageError) as e:
        raise ExportError(str(e)) from e


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
    if meta["format"] == "emaseg.onnx":
        from .. import onnx

        runner = onnx.OrtSegmenter(path, threads=torch.get_num_threads())
        return (lambda images: torch.from_numpy(runner.segment_batch(images.cpu().numpy()))), meta
    return torch.jit.load(str(path), map_location=device), meta
