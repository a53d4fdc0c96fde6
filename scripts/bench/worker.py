"""One backend timed in a process of its own (so peak RSS and thread pools are its own).

    python -m bench.worker --backend NAME --model FILE --frames FRAMES.npy --threads N
        --warmup W --iters K [--max-seconds S] --result OUT.json [--labels OUT.npy]

Backends (all take uint8 BGR H x W x 3 frames and return H x W labels):
    eager            SegmentationModule (the export's pre/post-processing) un-scripted, under
                     torch.inference_mode; --model is the checkpoint (.pth)
    eager_cl         the same with channels-last weights (exploration)
    torchscript      torch.jit.load of an exported file, called from Python
    torchscript_ofi  torch.jit.optimize_for_inference of a loaded (frozen) export: oneDNN conv
                     fusion and prepacked weights; what a load-time pass in the C++ runtime gets
    cpp              the C++ runtime through the bindings: emaseg.runtime.Segmenter.segment
    onnxruntime      ONNX Runtime, CPU provider, on a file written by emaseg.onnx.export_checked
    network          the network alone (no pre/post-processing) at its input size, as an
                     AOTInductor package from network_package(): --model the .pt2; returns no
                     labels (the frame-time share outside the network is measured against it)
    block            EMA / non-local probe (flops.probe_block), --block, --channels, --map HxW
    matmul           machine dense matmul GFLOP/s (flops.matmul_gflops), --n, --dtype
    conv             machine 3x3 conv GFLOP/s (flops.conv_gflops), --dtype, --channels-last

The result JSON always has "ok"; on failure "error" says why, and the run counts as skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from typing import Any, Callable

import numpy as np

from emaseg.atomic import atomic_open, write_atomic
from .timing import current_rss_mb, peak_rss_mb, summarize, time_calls

BACKENDS = ("eager", "eager_cl", "torchscript", "torchscript_ofi", "cpp", "onnxruntime", "network", "block",
            "matmul", "conv")


def network_package(checkpoint: str, height: int, width: int, path: str) -> str:
    """The checkpoint's network alone (normalised float input of height x width, logits at 1/8
    out) compiled with AOTInductor and freezing, as the .pt2 export compiles its network."""
    import torch
    from torch._inductor import aoti_compile_and_package

    from emaseg.checkpoint import load_model

    class Network(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)["out"]

    example = torch.zeros(1, 3, height, width)
    with torch.no_grad():
        program = torch.export.export(Network(load_model(checkpoint).eval()), (example,))
        return aoti_compile_and_package(program, package_path=path, inductor_configs={
            "freezing": True, "aot_inductor.metadata": {"emaseg_network_input": json.dumps([1, 3, height, width])}})


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)  # as the C++ runtime does; only before first use
    except RuntimeError:
        pass


def _torch_fn(module, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def run(frame: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            # .cpu() waits for a CUDA result, so the wall clock covers the whole call.
            return module(torch.from_numpy(frame).to(device)[None])[0].cpu().numpy()
    return run


def build_segment_fn(backend: str, model: str, threads: int, device: str = "cpu",
                     half: bool = False, resize: str = "none") -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    """The per-frame function of `backend` and facts about it (`half`: float16, CUDA only)."""
    info: dict[str, Any] = {"device": device, "half": half}
    if backend in ("eager", "eager_cl"):
        import torch

        from emaseg.checkpoint import load_model
        from emaseg.export import ResizePolicy, SegmentationModule

        _set_torch_threads(threads)
        net = load_model(model)
        policy = ResizePolicy("none") if resize == "none" else ResizePolicy("scale", scale=net.config.data.test_scale)
        module = SegmentationModule(net, net.config, policy).eval()
        if backend == "eager_cl":
            module = module.to(memory_format=torch.channels_last)
        module = module.to(device)
        if half:
            module = module.half()  # weights and the mean/std buffers: the module computes in float16
        info["torch_threads"] = torch.get_num_threads()
        return _torch_fn(module, device), info
    if backend in ("torchscript", "torchscript_ofi"):
        import torch

        _set_torch_threads(threads)
        module = torch.jit.load(model, map_location=device).eval()
        if half:
            module = module.to(torch.float16)  # the file format's contract for float16
        if backend == "torchscript_ofi":
            # Freezes first when the file is not frozen; keeps the other exported methods.
            module = torch.jit.optimize_for_inference(module, other_methods=["probabilities", "logits"])
        info["torch_threads"] = torch.get_num_threads()
        return _torch_fn(module, device), info
    if backend == "cpp":
        from emaseg.runtime import Segmenter  # ImportError: the bindings are not built

        seg = Segmenter(model, device=device, threads=threads, half=half)
        info["runtime_threads"] = seg.threads
        return seg.segment, info
    if backend == "network":
        import torch
        from torch._inductor import aoti_load_package

        _set_torch_threads(threads)
        compiled = aoti_load_package(model)
        inputs: dict[tuple[int, ...], Any] = {}

        def network(frame: np.ndarray) -> None:
            with torch.inference_mode():
                compiled(inputs.setdefault((), torch.randn(*_package_input_shape(compiled))))
        info["torch_threads"] = torch.get_num_threads()
        return network, info
    if backend == "onnxruntime":
        from emaseg.onnx import OrtSegmenter, ort_version

        runner = OrtSegmenter(model, threads)
        info["onnxruntime_version"] = ort_version()
        info["intra_op_num_threads"] = threads
        return runner.segment, info
    raise ValueError(f"unknown backend {backend!r}")


def _package_input_shape(compiled: Any) -> list[int]:
    """The fixed input shape a network_package() was compiled for, from its metadata."""
    spec = json.loads(compiled.get_metadata().get("emaseg_network_input", "null") or "null")
    if spec is None:
        raise ValueError("not a network package from network_package()")
    return spec


def run_segment(args: argparse.Namespace) -> dict[str, Any]:
    frames = np.load(args.frames)
    rss_start = current_rss_mb()
    t0 = time.perf_counter()
    fn, info = build_segment_fn(args.backend, args.model, args.threads, args.device, args.half, args.resize)
    load_s = time.perf_counter() - t0
    rss_loaded = current_rss_mb()
    by_frame: list = [None] * len(frames)

    def call(item: tuple[int, np.ndarray]) -> None:
        by_frame[item[0]] = fn(item[1])  # labels of frame i (any call on it; they are deterministic)

    warm, timed = time_calls(call, list(enumerate(frames)), warmup=args.warmup, iters=args.iters,
                             max_seconds=args.max_seconds, min_iters=min(3, args.iters))
    if args.labels and any(o is not None for o in by_frame):
        # Frames never reached (a row stopped early by --max-seconds) are all -1.
        shape = next(np.asarray(o).shape for o in by_frame if o is not None)
        with atomic_open(args.labels, "wb") as f:
            np.save(f, np.stack([np.asarray(o).astype(np.int32) if o is not None
                                 else np.full(shape, -1, np.int32) for o in by_frame]))
    return {
        **info,
        "frames": [int(v) for v in frames.shape],
        "load_s": load_s,
        "warmup_ms": warm,
        "latency": summarize(timed).to_dict(),
        "latencies_ms": timed,
        "rss_start_mb": rss_start,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": peak_rss_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", required=True, choices=BACKENDS)
    p.add_argument("--model", help="checkpoint (eager), exported .pt or .onnx file")
    p.add_argument("--frames", help=".npy of uint8 frames N x H x W x 3 (BGR)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resize", choices=("none", "config"), default="none",
                   help="eager: the network at the frame's size, or the config's test resize")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--max-seconds", type=float, default=float("inf"))
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (eager, torchscript, cpp)")
    p.add_argument("--half", action="store_true", help="float16 (CUDA only)")
    p.add_argument("--labels", help="write the labels of every frame here (.npy)")
    p.add_argument("--result", required=True, help="write the result JSON here")
    p.add_argument("--block", choices=("ema", "ema_unit", "non_local"))
    p.add_argument("--channels", type=int, default=512)
    p.add_argument("--bases", type=int, default=64)
    p.add_argument("--stages", type=int, default=3)
    p.add_argument("--map", default="64x128", help="feature map HxW (block)")
    p.add_argument("--n", type=int, default=2048, help="matrix size (matmul)")
    p.add_argument("--dtype", default="float32", help="matmul / conv dtype")
    p.add_argument("--channels-last", action="store_true", help="conv in channels-last")
    args = p.parse_args(argv)
    result: dict[str, Any] = {"backend": args.backend, "threads": args.threads, "pid": os.getpid(),
                              "python": platform.python_version()}
    try:
        if args.backend == "block":
            from .flops import probe_block
            _set_torch_threads(args.threads)
            h, w = (int(v) for v in args.map.lower().split("x"))
            result.update(probe_block(args.block, args.channels, h, w, num_bases=args.bases,
                                      num_stages=args.stages, runs=args.iters))
        elif args.backend == "conv":
            from .flops import conv_gflops
            _set_torch_threads(args.threads)
            result.update(conv_gflops(args.dtype, args.channels_last, seconds=args.max_seconds
                                      if args.max_seconds != float("inf") else 1.0))
        elif args.backend == "matmul":
            from .flops import matmul_gflops
            _set_torch_threads(args.threads)
            result.update(matmul_gflops(args.n, args.dtype, seconds=args.max_seconds
                                        if args.max_seconds != float("inf") else 1.0))
        else:
            result.update(run_segment(args))
        result["ok"] = True
    except Exception as e:  # reported to the parent, which records the backend as skipped
        result["ok"] = False
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        result["error"] = f"{type(e).__name__}: {first}"
        result["traceback_tail"] = traceback.format_exc().strip().splitlines()[-4:]
    result["peak_rss_mb"] = result.get("peak_rss_mb", peak_rss_mb())
    if "torch" in sys.modules:
        result["torch_version"] = sys.modules["torch"].__version__
    write_atomic(args.result, json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
