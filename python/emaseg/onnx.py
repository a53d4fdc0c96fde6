"""ONNX export of the deployable module and ONNX Runtime sessions: `python/export.py --output
M.onnx`, `evaluate.py --model M.onnx` and the benchmark's ONNX Runtime row all use this module.

What is exported: the whole `SegmentationModule.forward` - uint8 BGR N x H x W x 3 in, uint8
labels N x H x W out, with BGR->RGB, normalisation, the network, the bilinear resize of the
logits and the argmax inside the graph - so ORT does exactly the work our TorchScript file does.
The graph takes any batch and frame size (`dynamic`: torch.export's symbolic sizes), or one
fixed input shape, which lets ORT fold every shape computation (the benchmark's). Either
exporter may be used: `torch.onnx.export(dynamo=True)` (torch.export + onnxscript) or the legacy
TorchScript-tracing exporter (`dynamo=False`); `export_checked` tries them in order and keeps the
first whose ORT labels match the reference labels. The ema-seg metadata is the model's
`metadata_props` entry "emaseg_metadata" (JSON, as metadata.json in a .pt).

This module imports torch only inside the export functions: the ORT worker does not load it.
"""
from __future__ import annotations

import contextlib
import json
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from .atomic import atomic_path
from .quiet import quiet_loggers

OPSET = 18
EXPORTERS = ("dynamo", "legacy")
INPUT_NAME, OUTPUT_NAME = "images", "labels"
METADATA_KEY = "emaseg_metadata"


def export_onnx(module, example, path: str | Path, exporter: str, opset: int = OPSET,
                dynamic: bool = False) -> dict[str, Any]:
    """Exports `module(example)` to `path` with the named exporter; returns timing and sizes.
    `dynamic`: batch, height and width symbolic (the example should have a batch of 2 and odd
    sizes, since torch.export specialises dimensions whose example is 0 or 1)."""
    import torch

    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    path = Path(path)  # written in place: callers pass a temporary name (export_checked)
    t0 = time.perf_counter()
    with torch.no_grad(), _exporter_quiet():
        if exporter == "dynamo":
            auto = torch.export.Dim.AUTO
            shapes = {"images": {0: auto, 1: auto, 2: auto}} if dynamic else None
            program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=shapes, external_data=False, verbose=False)
            program.save(str(path), external_data=False)
        else:
            axes = {INPUT_NAME: {0: "N", 1: "H", 2: "W"}, OUTPUT_NAME: {0: "N", 1: "H", 2: "W"}} if dynamic else None
            torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True,
                              dynamic_axes=axes)
    return {"exporter": exporter, "opset": opset, "seconds": time.perf_counter() - t0,
            "bytes": path.stat().st_size}


@contextlib.contextmanager
def _exporter_quiet() -> Iterator[None]:
    """torch.onnx's own chatter, none of it about the user's model: that torchvision (which this
    project does not use) is absent, and a deprecation inside torch's pytree pickling."""
    with quiet_loggers("torch.onnx._internal.exporter._registration"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        yield


def write_metadata(path: str | Path, metadata: dict[str, Any]) -> None:
    """Stores `metadata` in the ONNX file's metadata_props (rewrites the file in place)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.save(model, str(path))


def read_metadata(path: str | Path) -> Optional[dict[str, Any]]:
    """The ema-seg metadata of an ONNX file (None: an ONNX file without it). Raises ValueError
    for a file ONNX cannot parse."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and others for files that are not ONNX
        raise ValueError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    return None


def input_shape(path: str | Path) -> list[Any]:
    """The model input's dimensions: ints where fixed, names where symbolic."""
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]


def make_session(path: str | Path, threads: int, optimization: str = "all"):
    """A CPU InferenceSession with `threads` intra-op threads, one inter-op thread, sequential
    execution, and the given graph optimisation level (basic, extended, all)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class OrtSegmenter:
    """`segment(frame)`: one uint8 BGR H x W x 3 frame -> H x W labels, through ORT."""

    def __init__(self, path: str | Path, threads: int, optimization: str = "all") -> None:
        self.session = make_session(path, threads, optimization)
        self.input_name = self.session.get_inputs()[0].name

    def segment(self, frame: np.ndarray) -> np.ndarray:
        return self.segment_batch(np.ascontiguousarray(frame)[None])[0]

    def segment_batch(self, frames: np.ndarray) -> np.ndarray:
        """N x H x W x 3 uint8 BGR -> N x H x W labels."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(frames)})[0]


def agreement(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Share of pixels with equal labels; pixels that are -1 (not computed) in either are left
    out. None when nothing is left."""
    a, b = np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64)
    if a.shape != b.shape:
        return 0.0
    valid = (a >= 0) & (b >= 0)
    if not valid.any():
        return None
    return float(np.mean(a[valid] == b[valid]))


def export_checked(module, frames: Sequence[np.ndarray], reference: Sequence[np.ndarray], path: str | Path,
                   threads: int, exporters: Sequence[str] = EXPORTERS, min_agreement: float = 0.999
                   ) -> dict[str, Any]:
    """Exports with each exporter in turn until one runs in ORT and agrees with `reference`
    labels on `frames` (share of equal pixels >= min_agreement). Returns what was tried; the
    chosen file is at `path` ("chosen" is None when none qualified)."""
    import torch

    path = Path(path)
    tried: list[dict[str, Any]] = []
    example = torch.from_numpy(np.ascontiguousarray(frames[0]))[None]
    for name in exporters:
        attempt: dict[str, Any] = {"exporter": name}
        tried.append(attempt)
        try:
            # The candidate becomes `path` only if it qualifies; ORT reads the extension.
            with atomic_path(path, suffix=path.suffix) as candidate:
                try:
                    attempt.update(export_onnx(module, example, candidate, name))
                    runner = OrtSegmenter(candidate, threads)
                    scores = [agreement(runner.segment(f), r) for f, r in zip(frames, reference)]
                    valid = [v for v in scores if v is not None]
                    attempt["label_agreement"] = min(valid) if valid else None
                    attempt["ok"] = bool(valid) and min(valid) >= min_agreement
                except Exception as e:  # an exporter failing is a result, not a crash
                    attempt["ok"] = False
                    attempt["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                    attempt["traceback_tail"] = traceback.format_exc().strip().splitlines()[-3:]
                if not attempt["ok"]:
                    raise _Rejected
        except _Rejected:
            continue
        return {"chosen": name, "path": str(path), "tried": tried}
    return {"chosen": None, "path": None, "tried": tried}


class _Rejected(Exception):
    """Leaves an atomic_path block without publishing the candidate (it is removed)."""


def ort_version() -> Optional[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    return ort.__version__


def quantize_int8(source: str | Path, target: str | Path, frames: Sequence[np.ndarray]) -> dict[str, Any]:
    """ONNX Runtime's own static int8 quantisation of an exported file (QDQ, per-channel weights,
    convolutions only, calibrated on `frames`): the comparison for our int8 .pt2. Raises whatever
    the quantiser raises on a graph it cannot handle."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(frames)

        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            frame = next(self.items, None)
            return None if frame is None else {INPUT_NAME: np.ascontiguousarray(frame)[None]}

    t0 = time.perf_counter()
    quantize_static(str(source), str(target), Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
    return {"seconds": time.perf_counter() - t0, "bytes": Path(target).stat().st_size, "frames": len(frames)}
