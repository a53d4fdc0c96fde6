"""Checkpoint -> deployable SegmentationModule -> file, guarded by a parity gate (gates.py).

The path from options to file runs one way: `export_model` checks the options once, builds the
module (`build_module`), and hands it to the one writer of the output's format, which writes
under a temporary name (emaseg.atomic), reloads what it wrote, passes it through its gate, and
only then renames it into place:

    .pt   -> _write_torchscript -> gates.gate_torchscript
    .pt2  -> _write_package     -> gates.gate_package   (float32, bfloat16; network.NetworkModel)
    .pt2  -> _write_int8        -> _write_package -> gates.gate_int8 (--dtype int8)
    .onnx -> _write_onnx        -> gates.gate_package
"""
import io
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from .. import __version__
from ..atomic import WriteError, atomic_open, atomic_path, check_output
from ..checkpoint import CheckpointError, file_sha256, load_model
from . import aoti, gates
from .errors import ExportError
from .gates import parity_frames  # noqa: F401 - part of this module's interface (tests, benchmarks)
from .metadata import EXTRA_FILE, FORMAT, FORMAT_VERSION, encode, read_metadata
from .module import MIN_SIZE, ResizePolicy, SegmentationModule
from .network import NetworkModel

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Kept here for the benchmark, which gates its own proposed TorchScript variants.
TOLERANCE = gates.TOLERANCE
check_parity = gates.compare_torchscript


@dataclass
class ExportReport:
    output: Path
    metadata: dict[str, Any]
    parity: list[dict[str, Any]] = field(default_factory=list)
    seconds_per_frame: Optional[float] = None


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


@dataclass(frozen=True)
class PackageSizes:
    """What a .pt2 compiles its network for: fixed network input sizes (H, W), the network sizes of
    aspect ratios (W, H) and of frame sizes (H, W), and with `any_size` once for any size too."""
    network_sizes: tuple[tuple[int, int], ...] = ()
    aspect_ratios: tuple[tuple[int, int], ...] = ()
    frame_sizes: tuple[tuple[int, int], ...] = ()
    any_size: bool = True

    def fixed(self) -> bool:
        return bool(self.network_sizes or self.aspect_ratios or self.frame_sizes)


def _check_options(checkpoint: str | Path, output: Path, *, dtype: str, device: str, optimize: bool, flip: bool,
                   calibration: Optional[str | Path], sizes: PackageSizes, add_to: Optional[Path],
                   frame_size: Optional[tuple[int, int]]) -> None:
    """Every combination of options that cannot make a file, refused before any work."""
    try:
        check_output(output, inputs=[checkpoint])
    except WriteError as e:
        raise ExportError(str(e)) from e
    suffix = output.suffix
    if suffix not in (".pt", aoti.SUFFIX, ".onnx"):
        raise ExportError(f"cannot write {output}: the suffix picks the format, .pt (TorchScript), "
                          f".pt2 (AOTInductor package) or .onnx")
    if frame_size is not None and suffix == ".pt":
        raise ExportError("--frame-size is for .pt2 packages; a .pt file takes frames of any size")
    listed = sizes.network_sizes or sizes.aspect_ratios or sizes.frame_sizes[1 if frame_size is not None else 0:]
    if (listed or add_to is not None or (not sizes.any_size and frame_size is None)) and suffix != aoti.SUFFIX:
        what = "--add-to is" if add_to is not None else "--frame-sizes, --network-sizes and --aspect-ratios are"
        raise ExportError(f"{what} for .pt2 packages; a {suffix} file takes frames of any size")
    if not sizes.any_size and not sizes.fixed() and add_to is None:
        raise ExportError("a package without the any-size model needs at least one size to compile")
    if any(min(size) < MIN_SIZE for size in sizes.frame_sizes + sizes.network_sizes):
        raise ExportError(f"every frame and network size must be at least {MIN_SIZE}x{MIN_SIZE}")
    if any(min(ratio) < 1 for ratio in sizes.aspect_ratios):
        raise ExportError("an aspect ratio is W:H with both at least 1, e.g. 16:9")
    if flip and suffix == aoti.SUFFIX:
        raise ExportError("--flip averages at the frame size, which a .pt2's network models cannot hold; "
                          "export flip models to a .pt file")
    if optimize and suffix == aoti.SUFFIX:
        raise ExportError("--optimize is for TorchScript files; a .pt2 is always compiled with freezing")
    if suffix == ".onnx" and (dtype != "float32" or device != "cpu" or optimize):
        raise ExportError("an .onnx file is exported in float32 on the CPU, without --optimize (ONNX Runtime "
                          "optimises it when it loads)")
    if dtype == "int8":
        if suffix != aoti.SUFFIX:
            raise ExportError("--dtype int8 writes a .pt2 package (AOTInductor runs the int8 kernels)")
        if device != "cpu":
            raise ExportError("--dtype int8 is for the CPU (x86 VNNI kernels); use float16 on CUDA")
        if calibration is None:
            raise ExportError("--dtype int8 needs --calibration DIR: a folder of a few dozen images like the "
                              "frames the model will see")
    elif calibration is not None:
        raise ExportError("--calibration is for --dtype int8")
    if add_to is not None:
        _check_add_to(add_to, checkpoint, dtype)


def _check_add_to(add_to: Path, checkpoint: str | Path, dtype: str) -> None:
    """A package sizes can be added to: one of this checkpoint, dtype, torch and CPU."""
    if not aoti.is_package(add_to):
        raise ExportError(f"--add-to {add_to}: not a .pt2 package")
    try:
        tags = aoti.read_package_metadata(add_to)
        aoti.check_runnable(tags, add_to)
    except aoti.PackageError as e:
        raise ExportError(f"--add-to: {e}") from e
    meta = json.loads(tags["emaseg_metadata"])
    if meta.get("checkpoint_sha256") != file_sha256(checkpoint):
        raise ExportError(f"--add-to {add_to} was exported from another checkpoint than {checkpoint}")
    if meta.get("dtype") != dtype:
        raise ExportError(f"--add-to {add_to} is {meta.get('dtype')}, not --dtype {dtype}")


def export_model(checkpoint: str | Path, output: str | Path, *, mode: Optional[str] = None,
                 resize: Optional[ResizePolicy] = None, flip: bool = False, dtype: str = "float32",
                 device: str = "cpu", optimize: bool = False, frames: Optional[list[torch.Tensor]] = None,
                 frame_size: Optional[tuple[int, int]] = None,
                 calibration: Optional[str | Path] = None,
                 frame_sizes: tuple[tuple[int, int], ...] = (),
                 network_sizes: tuple[tuple[int, int], ...] = (),
                 aspect_ratios: tuple[tuple[int, int], ...] = (),
                 any_size: bool = True, add_to: Optional[str | Path] = None) -> ExportReport:
    """.pt2 only: the network is compiled for the network input sizes `network_sizes` (H, W), those of
    `aspect_ratios` (W, H) and of `frame_sizes` (H, W) (fixed sizes: the fast code), and with
    `any_size` once for any size. `frame_size`: only for that frame's network size (no any-size
    model). `add_to`: keep that package's models and compile only what it lacks.
    `dtype="int8"` (.pt2 only): post-training quantisation calibrated on the images under the
    folder `calibration`. `frames`: the gate's frames instead of its noise frames."""
    output = Path(output)
    add_to = Path(add_to) if add_to is not None else None
    if frame_size is not None:
        sizes = PackageSizes(tuple(network_sizes), tuple(aspect_ratios), (tuple(frame_size), *frame_sizes), False)
    else:
        sizes = PackageSizes(tuple(network_sizes), tuple(aspect_ratios), tuple(frame_sizes), any_size)
    _check_options(checkpoint, output, dtype=dtype, device=device, optimize=optimize, flip=flip,
                   calibration=calibration, sizes=sizes, add_to=add_to, frame_size=frame_size)
    build = dict(mode=mode, resize=resize, flip=flip, device=device)
    if dtype == "int8":
        reference, meta = build_module(checkpoint, dtype="float32", **build)
        return _write_int8(reference, meta, output, sizes=sizes, calibration=calibration, add_to=add_to)
    module, meta = build_module(checkpoint, dtype=dtype, **build)
    if output.suffix == ".onnx":
        return _write_onnx(module, meta, output, frames=frames, frame_size=frame_size)
    if output.suffix == aoti.SUFFIX:
        # A low-precision package is gated against the float32 module.
        reference = module if dtype == "float32" else build_module(checkpoint, dtype="float32", **build)[0]
        return _write_package(NetworkModel(module), meta, output, dtype=dtype, device=device, frames=frames,
                              sizes=sizes, reference=reference, add_to=add_to, low_precision=dtype != "float32")
    return _write_torchscript(module, meta, output, dtype=dtype, device=device, optimize=optimize, frames=frames)


def _write_torchscript(module: SegmentationModule, meta: dict[str, Any], output: Path, *, dtype: str, device: str,
                       optimize: bool, frames: Optional[list[torch.Tensor]]) -> ExportReport:
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
            rows = gates.gate_torchscript(module, loaded, frames or parity_frames(), gates.TOLERANCE[dtype], device)
            timing = _time_per_frame(loaded, device)
    except WriteError as e:
        raise ExportError(str(e)) from e
    return ExportReport(output=output, metadata=meta, parity=rows, seconds_per_frame=timing)


def _package_sizes(meta: dict[str, Any], sizes: PackageSizes) -> list[tuple[int, int]]:
    """The network input sizes to compile (the any-size model is `sizes.any_size`)."""
    from .network import aspect_ratio_sizes, network_size

    out = [tuple(s) for s in sizes.network_sizes]
    out += aspect_ratio_sizes(meta["resize"], list(sizes.aspect_ratios))
    out += [network_size(meta["resize"], *f) for f in sizes.frame_sizes]
    if any(min(s) < MIN_SIZE for s in out):
        raise ExportError(f"every network size must be at least {MIN_SIZE}x{MIN_SIZE}, got "
                          + ", ".join(f"{h}x{w}" for h, w in out if min(h, w) < MIN_SIZE))
    return list(dict.fromkeys(out))


def _package_gate_frames(meta: dict[str, Any], any_size: bool, frames: Optional[list[torch.Tensor]]
                         ) -> list[torch.Tensor]:
    """The caller's frames that the package takes, or noise frames: for each compiled network size a
    frame twice its size (the resize and the frame-size labels run too) where that maps back to it,
    and with the any-size model the usual odd sizes."""
    from .network import network_size

    sizes = [tuple(int(v) for v in k.split("x")) for k in meta["network_models"]]
    takes = lambda f: any_size or network_size(meta["resize"], f.shape[1], f.shape[2]) in sizes  # noqa: E731
    if frames:
        fitting = [f for f in frames if takes(f)]
        if fitting:
            return fitting
    out = parity_frames(gates.PACKAGE_PARITY_SIZES) if any_size else []
    for h, w in sizes:
        frame = (2 * h, 2 * w) if network_size(meta["resize"], 2 * h, 2 * w) == (h, w) else (h, w)
        out += parity_frames(((1, *frame),), seed=h * 7919 + w)
    return out


def _write_package(network: NetworkModel, meta: dict[str, Any], output: Path, *, dtype: str, device: str,
                   frames: Optional[list[torch.Tensor]], sizes: PackageSizes, reference: SegmentationModule,
                   add_to: Optional[Path], low_precision: bool, int8_frames: Optional[list[torch.Tensor]] = None
                   ) -> ExportReport:
    """torch.export + AOTInductor of the network model into a temporary .pt2 beside `output`, gated
    against `reference`, the float32 module, through the package's own frame work."""
    network_sizes = _package_sizes(meta, sizes)
    with _export_errors(), atomic_path(output, suffix=aoti.SUFFIX) as tmp:
        meta = aoti.compile_package(network, meta, tmp, network_sizes=network_sizes, any_size=sizes.any_size,
                                    device=device, add_to=add_to)
        model, _ = aoti.load_package(tmp, device)
        if int8_frames is not None:
            rows = gates.gate_int8(reference, model, model.probabilities, int8_frames, device)
        else:
            tolerance = gates.LOW_PRECISION_PROBABILITY if low_precision else gates.PACKAGE_TOLERANCE[dtype]
            agreement = gates.LOW_PRECISION_AGREEMENT if low_precision else None
            rows = gates.compare_package(reference, model, model.probabilities,
                                         _package_gate_frames(meta, meta["any_size"], frames), tolerance, device,
                                         min_agreement=agreement)
            gates.gate_package(rows, low_precision=low_precision, tolerance=tolerance)
        first = next(iter(meta["network_models"]), None)
        timing = _time_per_frame(model, device, sizes={"N": 1, **dict(zip("HW", map(int, first.split("x"))))}
                                 if first else None)
    return ExportReport(output=output, metadata=meta, parity=rows, seconds_per_frame=timing)


def _write_onnx(module: SegmentationModule, meta: dict[str, Any], output: Path, *,
                frames: Optional[list[torch.Tensor]], frame_size: Optional[tuple[int, int]]) -> ExportReport:
    """torch.onnx (dynamo) of the deployable module into a temporary .onnx beside `output`, metadata
    in metadata_props, gated through ONNX Runtime: labels identical to the eager module's but for
    near-ties (ORT sums in its own order, as Inductor does), on odd sizes and a portrait frame."""
    try:
        from .. import onnx
    except ImportError as e:
        raise ExportError(f"ONNX export needs onnx, onnxscript and onnxruntime ({e})") from e
    meta = {**meta, "format": "emaseg.onnx"}
    dynamic = frame_size is None
    fixed = {} if dynamic else {"N": 1, "H": frame_size[0], "W": frame_size[1]}
    try:
        with atomic_path(output, suffix=".onnx") as tmp:
            try:
                info = onnx.export_onnx(module, aoti.package_input(frame_size), tmp, "dynamo", dynamic=dynamic)
            except Exception as e:  # noqa: BLE001 - the exporter's own error, in one line
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ExportError(f"torch.onnx could not export the module: {first}" +
                                  ("; try --frame-size HxW for one fixed frame size" if dynamic else "")) from e
            meta["fixed_input"] = fixed
            meta["onnx"] = {"opset": info["opset"], "exporter": info["exporter"]}
            onnx.write_metadata(tmp, meta)
            runner = onnx.OrtSegmenter(tmp, threads=torch.get_num_threads())
            segment = lambda f: torch.from_numpy(runner.segment_batch(f.cpu().numpy()))  # noqa: E731
            rows = gates.compare_package(module, segment, None, gates.gate_frames(fixed, frames),
                                         gates.ONNX_TOLERANCE, "cpu")
            gates.gate_package(rows, low_precision=False, tolerance=gates.ONNX_TOLERANCE,
                               against="ONNX Runtime against the eager module")
            timing = _time_per_frame(segment, "cpu", sizes=fixed)
    except WriteError as e:
        raise ExportError(str(e)) from e
    return ExportReport(output=output, metadata=meta, parity=rows, seconds_per_frame=timing)


def _write_int8(reference: SegmentationModule, meta: dict[str, Any], output: Path, *, sizes: PackageSizes,
                calibration: str | Path, add_to: Optional[Path]) -> ExportReport:
    """PT2E int8 quantisation (emaseg.export.int8) of the float32 module's network, compiled into a
    .pt2, gated on the calibration images it held out against the float32 module."""
    from . import int8

    frame_size = sizes.frame_sizes[0] if len(sizes.frame_sizes) == 1 and not sizes.any_size else None
    try:
        calib, held_out = int8.calibration_images(calibration, frame_size)
    except int8.CalibrationError as e:
        raise ExportError(str(e)) from e
    meta = {**meta, "dtype": "int8",
            "calibration": {"frames": len(calib), "held_out": len(held_out), "folder": Path(calibration).name}}
    # One network size: the quantised graph may be specialised to it (calibrated at it).
    try:
        quantized = int8.quantize_network(reference, calib, dynamic=len(_package_sizes(meta, sizes)) != 1)
    except int8.CalibrationError as e:
        raise ExportError(str(e)) from e
    return _write_package(NetworkModel(quantized), meta, output, dtype="int8", device="cpu", frames=None,
                          sizes=sizes, reference=reference, add_to=add_to, low_precision=True,
                          int8_frames=[torch.from_numpy(f)[None] for f in held_out])


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
