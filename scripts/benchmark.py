#!/usr/bin/env python3
"""Benchmark ema-seg's inference paths on the same weights and the same frames.

    python scripts/benchmark.py [--config NAME ...] [--size HxW] [--threads N] [--quick] [--json]
        [--out DIR] [--backends a,b,...] [--explore] [--skip rows,ema,machine,video]
        [--omp-wait-policy inherit|passive|active]

Per config (default: emanet_r50-d8_512x1024_80k_cityscapes at 512x1024 and the demo config
emanet_r18w16-d8_256x512_synthetic at 256x512; --config/--size narrow it):

  rows        eager PyTorch (SegmentationModule, the export's pre/post-processing, un-scripted,
              inference_mode); the exported TorchScript file from Python: plain, --optimize
              (frozen), frozen + torch.jit.optimize_for_inference; the C++ runtime through the
              bindings (plain and --optimize file) and through `ema_seg --benchmark --json`;
              ONNX Runtime (CPU EP; the whole module exported, uint8 frame in, labels out; the
              dynamo exporter first, the legacy one second, kept only if its labels equal
              eager's); the C++ runtime on a bfloat16 export, and on a bfloat16 + channels-last
              + frozen file (a proposed export variant, built here from the exporter's parts).
              Each row runs in a process of its own (its own peak RSS and thread pools), all with
              --threads threads (torch.set_num_threads, ORT intra_op_num_threads, ema_seg
              --threads, OMP/MKL/OPENBLAS_NUM_THREADS). Latency: median and p95 of per-frame
              calls after warm-up; fps = 1000 / median; speed-ups vs ONNX Runtime and vs eager
              from medians (>1: faster); label agreement with eager float32.
  frames      a generated street drive (streetgen.SceneSequence) written as mp4v and
              decoded back: every backend gets exactly the frames ema_seg decodes. Weights: the
              demo checkpoint for the demo config when models/emanet_demo.pth exists, otherwise
              a seeded random init (timing does not depend on the weights).
  video       `ema_seg --video --benchmark --json --output overlay.mp4` (decode, model, overlay,
              encode on their own threads): its fps against the C++ runtime's model-only fps on
              the same frames and file (the `cpp` row); target >= 0.95.
  efficiency  model GFLOPs (FlopCounterMode), achieved GFLOP/s per row, and the machine's dense
              torch.mm GFLOP/s (float32 and bfloat16) with the same threads.
  EMA         EMA unit (512 channels, 64 bases, 3 stages) vs a non-local block at 1/8 of 512x1024
              and of 769x769: FLOPs, peak memory (RSS high-water mark in a fresh process), time.
  CUDA        with a GPU (torch.cuda.is_available()): fp16 rows (eager, C++) and the published
              mmsegmentation V100 fps (R-50-D8 4.58, R-101-D8 2.87) for comparison.

Outputs in --out (default docs/benchmarks/): benchmark.json, benchmark.png (fps bar chart per
config with speed-ups), benchmark.md. Prints the Markdown table, or with --json one JSON object
(keys cpp_vs_onnxruntime and cpp_vs_eager: per config). --quick: few runs and half-size frames
(unless --size): checks the tooling, gives no numbers worth quoting. Measure on a quiet machine:
LibTorch's OpenMP threads spin-wait, and on cores shared with another busy process they can lose
an order of magnitude (--omp-wait-policy passive avoids that; the JSON records the load average).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "scripts"))  # bench/, also when imported from elsewhere

import numpy as np  # noqa: E402

from bench import report  # noqa: E402  (scripts/bench/, beside this script)
from bench.timing import thread_env  # noqa: E402
from emaseg.atomic import write_atomic  # noqa: E402

R50 = "emanet_r50-d8_512x1024_80k_cityscapes"
DEMO = "emanet_r18w16-d8_256x512_synthetic"
DEFAULT_CONFIGS = (R50, DEMO)
DEFAULT_SIZES = {R50: (512, 1024), DEMO: (256, 512)}
DEMO_CHECKPOINT = ROOT / "models" / "emanet_demo.pth"
# Published fps of mmsegmentation's EMANet (V100, fp32, the config's 1024x2048 test scale).
SEED_FPS = {R50: 4.58, "emanet_r101-d8_512x1024_80k_cityscapes": 2.87}

BACKENDS = ("eager", "torchscript", "torchscript_frozen", "torchscript_ofi", "cpp", "cpp_frozen",
            "onnxruntime", "cpp_bf16", "cpp_bf16_cl", "cpp_pt2", "cpp_pt2_bf16", "cpp_pt2_int8", "network",
            "cpp_cli")
EXPLORE = ("eager_cl", "torchscript_bf16", "cpp_pt2_any", "onnxruntime_int8")
CUDA_ROWS = ("eager_cuda_fp16", "cpp_cuda_fp16")
SECTIONS = ("rows", "ema", "machine", "video")
# Warm-up calls before timing. TorchScript's profiling executor profiles on the first call and
# compiles on the second (and may still specialise on the third): cheap models get more warm-up,
# where it costs nothing; for heavy ones compute dominates and the median absorbs a straggler.
HEAVY_GFLOPS = 50.0
WARMUP = {"light": {"torch": 5, "other": 3}, "heavy": {"torch": 2, "other": 1}}

log_enabled = True


def log(msg: str) -> None:
    if log_enabled:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_size(text: str) -> tuple[int, int]:
    from emaseg import cli

    try:
        h, w = cli.parse_size(text)
    except ValueError as e:
        raise SystemExit(f"benchmark: error: {e}") from None
    if h < 64 or w < 64:
        raise SystemExit("benchmark: error: --size must be at least 64x64 (the scene generator's minimum)")
    return h, w


def short_name(config: str) -> str:
    return config.split("_")[1] if config.startswith("emanet_") else config


# ------------------------------------------------------------------------------------ machine

def cpu_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and info["cpu"] in ("", platform.machine()):
                    info["cpu"] = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
    info["isa"] = {k: (k in flags) for k in wanted}
    return info


# ------------------------------------------------------------------------------------ workers

OMP_WAIT_POLICY: Optional[str] = None  # set by --omp-wait-policy for every child process


def child_env(threads: int) -> dict[str, str]:
    env = thread_env(threads)
    if OMP_WAIT_POLICY:
        env["OMP_WAIT_POLICY"] = OMP_WAIT_POLICY
    return env


def run_worker(args: list[str], threads: int, result: Path, timeout: float) -> dict[str, Any]:
    """`python -m bench.worker ARGS` in a fresh process; its result JSON."""
    cmd = [sys.executable, "-m", "bench.worker", *args, "--threads", str(threads), "--result", str(result)]
    env = child_env(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "scripts"), str(ROOT / "python"), env.get("PYTHONPATH", "")])
    env.setdefault("PYTHONWARNINGS", "ignore")
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    if result.exists():
        return json.loads(result.read_text())
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
    return {"ok": False, "error": f"worker exited with {proc.returncode}: {tail[0]}"}


def run_cli(cli: Path, model: Path, video: Path, threads: int, overlay: Optional[Path], cwd: Path,
            timeout: float) -> dict[str, Any]:
    """`ema_seg --video FILE --benchmark --json [--output overlay.mp4]`; its JSON as a row.
    Without --output the pipeline decodes and runs the model; with it, it also draws the overlay
    and encodes it (mp4v), on the pipeline's other threads."""
    cmd = [str(cli), "--model", str(model), "--video", str(video), "--benchmark", "--json", "--quiet",
           "--threads", str(threads)]
    if overlay is not None:
        cmd += ["--output", str(overlay)]
    try:
        proc = subprocess.run(cmd, env=child_env(threads), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"ema_seg timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        return {"ok": False, "error": f"ema_seg exited with {proc.returncode}: {tail[0]}"}
    try:
        summary = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        return {"ok": False, "error": f"ema_seg --json printed no JSON: {e}"}
    m = summary["model_ms"]
    return {
        "ok": True,
        "command": " ".join(cmd[:1] + [Path(c).name if "/" in c else c for c in cmd[1:]]),
        "overlay_output": overlay is not None,
        "latency": {"count": m["count"], "median_ms": m["p50"], "p95_ms": m["p95"], "mean_ms": m["mean"],
                    "max_ms": m["max"], "min_ms": None, "fps": 1000.0 / m["p50"] if m["p50"] else None},
        "end_to_end_ms": summary["end_to_end_ms"],
        "pipeline_fps": summary["fps"],
        "frames": summary["frames"],
        "dropped": summary["dropped"],
        "peak_rss_mb": summary.get("peak_rss_mb"),
        "note": "model_ms of ema_seg's own --benchmark (3 warm-up runs on a black frame first) while the "
                "pipeline decodes" + (" and draws + encodes the overlay" if overlay is not None else "")
                + " on its other threads",
    }


# ------------------------------------------------------------------------------------ set-up

def make_checkpoint(config: str, work: Path, allow_demo: bool) -> tuple[Path, str]:
    """The demo checkpoint for the demo config when it exists, else a seeded random init."""
    import torch

    from emaseg.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from emaseg.config import get_config
    from emaseg.models import build_model

    if allow_demo and DEMO_CHECKPOINT.exists():
        try:
            if load_checkpoint(DEMO_CHECKPOINT)["config"]["name"] == config:
                return DEMO_CHECKPOINT, f"trained ({DEMO_CHECKPOINT.relative_to(ROOT)})"
        except CheckpointError:
            pass
    cfg = get_config(config)
    torch.manual_seed(0)
    path = work / f"{config}.random.pth"
    save_checkpoint(path, build_model(cfg).eval(), cfg)
    return path, "random init (seed 0): timing is weight-independent; label agreement is less telling"


def make_frames(h: int, w: int, count: int, work: Path) -> tuple[np.ndarray, Optional[Path], str]:
    """Frames every backend gets: a generated drive (mp4v) decoded back with OpenCV, or, for
    odd sizes that mp4v cannot hold, generated scenes directly (no video section then)."""
    import cv2

    from streetgen import SceneSequence

    seq = SceneSequence(seed=7, height=h, width=w, fps=10.0)
    rendered = [seq.frame(k)[0] for k in range(count)]
    if h % 2 or w % 2:
        return np.stack(rendered), None, "generated scenes (odd size: no video)"
    video = work / f"drive_{h}x{w}.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    for f in rendered:
        writer.write(f)
    writer.release()
    cap = cv2.VideoCapture(str(video))
    decoded = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        decoded.append(f)
    cap.release()
    if len(decoded) != count:
        return np.stack(rendered), None, f"generated scenes (video re-read gave {len(decoded)} of {count} frames)"
    return np.stack(decoded), video, f"{count} frames of a generated drive, mp4v, decoded with OpenCV"


def resize_policy(kind: str, checkpoint: Path):
    """The exports' test resize: "none" (the network at the frame's size: timing the network) or
    "config" (the config's own, as deployed: e.g. a 1080p frame resized to 256x455 for the demo)."""
    from emaseg.checkpoint import load_model
    from emaseg.export import ResizePolicy

    if kind == "none":
        return ResizePolicy("none")
    return ResizePolicy("scale", scale=load_model(checkpoint).config.data.test_scale)


def export_proposed(checkpoint: Path, out: Path, gate, resize) -> list[dict[str, Any]]:
    """bfloat16 + channels-last weights + frozen: not an export_model option (yet); built from the
    exporter's own pieces (same module, metadata, parity check) plus `.to(channels_last)`.

    The check is looser than export_model's (labels identical): freezing folds BN into the
    bfloat16 conv weights, which can move near-tied labels of a random-weight model; here it only
    refuses a file whose labels differ on more than 1% of the gate's pixels. The rows' label
    agreement with float32 eager is measured anyway."""
    import torch

    from emaseg.export import ExportError
    from emaseg.export.exporter import TOLERANCE, build_module, check_parity, script_module
    from emaseg.export.metadata import EXTRA_FILE, encode

    module, meta = build_module(checkpoint, mode=None, resize=resize, flip=False,
                                dtype="bfloat16", device="cpu")
    module = module.to(memory_format=torch.channels_last)
    torch.jit.save(script_module(module, optimize=True), str(out), _extra_files={EXTRA_FILE: encode(meta)})
    rows = check_parity(module, torch.jit.load(str(out)), gate, TOLERANCE["bfloat16"], "cpu")
    pixels = sum(int(np.prod(f.shape[:3])) for f in gate)
    if sum(r["labels_differ"] for r in rows) > 0.01 * pixels:
        out.unlink()
        raise ExportError(f"parity check failed: {rows}")
    return rows


def calibration_folder(work: Path, frame_size: tuple[int, int], count: int = 20) -> Path:
    """Generated street scenes (another seed than the timed frames) for int8 calibration."""
    import cv2

    from streetgen import generate_scene

    folder = work / f"calibration_{frame_size[0]}x{frame_size[1]}"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(1234)
    for i in range(count):
        cv2.imwrite(str(folder / f"scene{i:03d}.png"), generate_scene(rng, *frame_size)[0])
    return folder


def export_int8_speed_only(checkpoint: Path, out: Path, resize, frame_size: tuple[int, int], folder: Path) -> None:
    """The int8 package without export_model's accuracy gate: for random weights, whose labels
    are near-ties everywhere, the row measures speed only (the JSON says so)."""
    from emaseg.export import aoti, int8
    from emaseg.export.exporter import build_module
    from emaseg.export.network import NetworkModel, network_size

    module, meta = build_module(checkpoint, mode=None, resize=resize, flip=False, dtype="float32", device="cpu")
    calib, _ = int8.calibration_images(folder, frame_size)
    aoti.compile_package(NetworkModel(int8.quantize_network(module, calib, dynamic=False)), {**meta, "dtype": "int8"},
                         out, network_sizes=(network_size(meta["resize"], *frame_size),), any_size=False)


def export_files(checkpoint: Path, work: Path, tag: str, want: set[str], resize,
                 frame_size: tuple[int, int], trained: bool = True) -> dict[str, Any]:
    """The model files the rows need, with the test resize `resize`, each through a parity gate
    (one small batch: the full gate is the export tests' job, not the benchmark's). The .pt2
    packages are compiled for the benchmark's `frame_size` (export.py --frame-size, as setup.sh
    does for the sample video), except pt2_any, which takes any size."""
    from emaseg.export import ExportError, export_model
    from emaseg.export.exporter import parity_frames

    gate = parity_frames(((1, 72, 136),))
    variants = {"plain": {}, "frozen": {"optimize": True}, "bf16": {"dtype": "bfloat16"},
                "bf16_cl": {"dtype": "bfloat16", "optimize": True, "channels_last": True},
                "pt2": {"suffix": ".pt2", "frame_size": frame_size},
                "pt2_bf16": {"suffix": ".pt2", "frame_size": frame_size, "dtype": "bfloat16"},
                "pt2_int8": {"suffix": ".pt2", "frame_size": frame_size, "dtype": "int8"},
                "pt2_any": {"suffix": ".pt2"}}
    files: dict[str, Any] = {}
    for name, kw in variants.items():
        if name not in want:
            continue
        kw = dict(kw)
        out = work / f"{tag}.{name}{kw.pop('suffix', '.pt')}"
        t0 = time.perf_counter()
        try:
            if name == "bf16_cl":
                parity = export_proposed(checkpoint, out, gate, resize)
            elif name == "pt2_int8":
                folder = calibration_folder(work, frame_size)
                if trained:
                    parity = export_model(checkpoint, out, resize=resize, frame_size=frame_size, dtype="int8",
                                          calibration=folder).parity
                else:
                    export_int8_speed_only(checkpoint, out, resize, frame_size, folder)
                    parity = "not gated: random weights, speed only"
            else:
                parity = export_model(checkpoint, out, resize=resize, frames=gate, **kw).parity
            files[name] = {"path": out, "seconds": time.perf_counter() - t0, "flags": kw, "parity": parity}
        except (ExportError, RuntimeError) as e:
            files[name] = {"path": None, "error": str(e).splitlines()[0]}
        log(f"  export {name}: {'ok' if files[name]['path'] else files[name]['error']}")
    return files


# ------------------------------------------------------------------------------------ one config

def plan_iters(gflops: float, quick: bool, override: Optional[int]) -> int:
    if override:
        return max(1, override)
    budget = 30.0 if quick else 150.0  # GFLOP per backend row, roughly seconds at 1-5 GFLOP/s/thread
    return int(min(10 if quick else 30, max(3, budget / max(gflops, 1e-3))))


def bench_config(config: str, size: tuple[int, int], args: argparse.Namespace, work: Path,
                 machine: dict[str, Any]) -> dict[str, Any]:
    import torch

    from bench.flops import model_flops
    from emaseg.onnx import agreement, export_checked
    from emaseg.checkpoint import load_model
    from emaseg.export import SegmentationModule
    from emaseg.inference import rescale_size

    h, w = size
    tag = f"{short_name(config)}_{h}x{w}_{args.resize}"
    checkpoint, weights = make_checkpoint(config, work, allow_demo=True)
    resize = resize_policy(args.resize, checkpoint)
    # FLOPs of the network at the size it runs at (the frame's, or the config's resize of it).
    net_h, net_w = (h, w) if resize.kind == "none" else rescale_size(h, w, resize.scale)
    flops = model_flops(config, net_h, net_w)
    iters = plan_iters(flops["gflops"], args.quick, args.iters)
    log(f"{config} at {h}x{w} (network at {net_h}x{net_w}): {flops['gflops']:.1f} GFLOPs/frame, "
        f"{iters} timed runs per row")
    frames, video, frames_note = make_frames(h, w, iters, work)
    frames_path = work / f"{tag}.frames.npy"
    np.save(frames_path, frames)
    backends = [b for b in args.backend_list if not (b == "cpp_cli" and video is None)]

    want = {"plain"}
    if any(b in backends for b in ("torchscript_frozen", "torchscript_ofi", "cpp_frozen")) or args.cpp_file == "frozen":
        want.add("frozen")
    if args.cpp_file == "pt2":
        want.add("pt2")
    if any(b in ("cpp_bf16", "torchscript_bf16") for b in backends):
        want.add("bf16")
    if "cpp_bf16_cl" in backends:
        want.add("bf16_cl")
    for row, variant in (("cpp_pt2", "pt2"), ("cpp_pt2_bf16", "pt2_bf16"), ("cpp_pt2_any", "pt2_any"),
                         ("cpp_pt2_int8", "pt2_int8")):
        if row in backends:
            want.add(variant)
    files = export_files(checkpoint, work, tag, want, resize, (h, w), trained=weights.startswith("trained"))
    if "network" in backends:
        from bench.worker import network_package

        path = work / f"{tag}.network.pt2"
        try:
            network_package(str(checkpoint), net_h, net_w, str(path))
            files["network"] = {"path": path}
        except Exception as e:  # noqa: BLE001 - reported as a skipped row
            files["network"] = {"path": None, "error": str(e).splitlines()[0]}
        log(f"  network package: {'ok' if files['network']['path'] else files['network']['error']}")
    # The runtime's default path for frames of this size: the package compiled for it where it
    # could be made (what setup.sh makes for the sample video), else the TorchScript file.
    default_variant = args.cpp_file
    if default_variant == "default":
        default_variant = "pt2" if files.get("pt2", {}).get("path") else "plain"
    main_file = files.get(default_variant, {}).get("path")

    def pt(name: str) -> Optional[Path]:
        return files.get(name, {}).get("path")

    weight = "heavy" if flops["gflops"] >= HEAVY_GFLOPS else "light"
    tw, ow = WARMUP[weight]["torch"], WARMUP[weight]["other"]
    timeout = args.worker_timeout
    max_s = args.max_seconds
    rows: dict[str, Any] = {}
    labels: dict[str, Path] = {}
    onnx_info: Optional[dict[str, Any]] = None

    def worker_row(name: str, backend: str, model: Optional[Path], warmup: int, extra: tuple = ()) -> None:
        if model is None:
            rows[name] = {"ok": False, "error": "its model file could not be made (see exports)"}
            log(f"  {name}: skipped ({rows[name]['error']})")
            return
        lab = work / f"{tag}.{name}.labels.npy"
        res = run_worker(["--backend", backend, "--model", str(model), "--frames", str(frames_path),
                          "--warmup", str(warmup), "--iters", str(iters), "--max-seconds", str(max_s),
                          "--labels", str(lab), "--resize", args.resize, *extra], args.threads,
                         work / f"{tag}.{name}.json", timeout)
        res["model_file"] = model.name
        rows[name] = res
        if res.get("ok") and lab.exists():
            labels[name] = lab
        if res.get("ok"):
            lat = res["latency"]
            log(f"  {name}: median {lat['median_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms, "
                f"peak RSS {res['peak_rss_mb']:.0f} MB")
        else:
            log(f"  {name}: skipped ({res.get('error')})")

    # Rows that only time one model file in a worker: name -> (worker backend, file, warm-up runs).
    file_rows = {
        "eager": ("eager", checkpoint, ow),
        "eager_cl": ("eager_cl", checkpoint, ow),
        "torchscript": ("torchscript", pt("plain"), tw),
        "torchscript_frozen": ("torchscript", pt("frozen"), tw),
        "torchscript_ofi": ("torchscript_ofi", pt("frozen"), tw),
        "torchscript_bf16": ("torchscript", pt("bf16"), tw),
        "cpp": ("cpp", pt("plain"), tw),
        "cpp_frozen": ("cpp", pt("frozen"), tw),
        "cpp_bf16": ("cpp", pt("bf16"), tw),
        "cpp_bf16_cl": ("cpp", pt("bf16_cl"), tw),
        "cpp_pt2": ("cpp", pt("pt2"), tw),
        "cpp_pt2_bf16": ("cpp", pt("pt2_bf16"), tw),
        "cpp_pt2_any": ("cpp", pt("pt2_any"), tw),
        "cpp_pt2_int8": ("cpp", pt("pt2_int8"), tw),
        "network": ("network", pt("network"), tw),
    }
    for name in backends:
        if name in file_rows:
            worker_row(name, *file_rows[name])
        elif name == "onnxruntime":
            if "eager" not in labels:
                rows[name] = {"ok": False, "error": "needs the eager row's labels to verify the export"}
                continue
            ref = np.load(labels["eager"])
            net = load_model(checkpoint)
            module = SegmentationModule(net, net.config, resize).eval()
            torch.set_num_threads(args.threads)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                onnx_info = export_checked(module, [frames[0]], [ref[0].astype(np.uint8)], work / f"{tag}.onnx",
                                           args.threads, exporters=args.onnx_exporters)
            del module, net
            tried = "; ".join(f"{t['exporter']}: " + ("ok" if t.get("ok") else
                                                      str(t.get("error") or t.get("label_agreement")))
                              for t in onnx_info["tried"])
            log(f"  onnx export: {onnx_info['chosen'] or 'failed'} ({tried})")
            if onnx_info["chosen"] is None:
                rows[name] = {"ok": False, "error": "no ONNX exporter produced a model agreeing with eager"}
                continue
            worker_row(name, "onnxruntime", Path(onnx_info["path"]), ow)
            rows[name]["exporter"] = onnx_info["chosen"]
        elif name == "onnxruntime_int8":
            # ONNX Runtime's own static int8 quantiser on the float file of the onnxruntime row.
            if not (onnx_info or {}).get("path"):
                rows[name] = {"ok": False, "error": "needs the onnxruntime row's file"}
                continue
            import cv2

            from emaseg.onnx import quantize_int8

            folder = calibration_folder(work, (h, w))
            calib = [cv2.imread(str(f)) for f in sorted(folder.glob("*.png"))][:16]
            target = work / f"{tag}.int8.onnx"
            try:
                quantized = quantize_int8(onnx_info["path"], target, calib)
            except Exception as e:  # noqa: BLE001 - the quantiser failing is a result
                rows[name] = {"ok": False, "error": f"ORT quantiser: {type(e).__name__}: "
                                                    f"{(str(e).strip().splitlines() or [''])[0][:200]}"}
                log(f"  {name}: skipped ({rows[name]['error']})")
                continue
            worker_row(name, "onnxruntime", target, ow)
            rows[name]["quantized"] = quantized
        elif name == "cpp_cli":
            if not args.cli.exists() or main_file is None:
                rows[name] = {"ok": False, "error": f"{args.cli} not built" if main_file else "no model file"}
                continue
            # Light models: a plain --benchmark run here, the overlay run in the video section.
            # Heavy ones: one run with the overlay (drawing and encoding are noise next to seconds
            # of model time), which serves both.
            overlay = work / f"{tag}.overlay.mp4" if weight == "heavy" else None
            res = run_cli(args.cli, main_file, video, args.threads, overlay, work, timeout)
            res["model_file"] = main_file.name if main_file else None
            rows[name] = res
            if res.get("ok"):
                log(f"  cpp_cli: model median {res['latency']['median_ms']:.1f} ms, "
                    f"pipeline {res['pipeline_fps']:.2f} fps")
            else:
                log(f"  cpp_cli: skipped ({res.get('error')})")
        else:
            rows[name] = {"ok": False, "error": f"unknown backend {name}"}

    # CUDA: fp16 rows (present for GPU machines; skipped where torch has no CUDA).
    if args.cuda and torch.cuda.is_available():
        for name, backend, model in (("eager_cuda_fp16", "eager", checkpoint), ("cpp_cuda_fp16", "cpp", main_file)):
            worker_row(name, backend, model, tw, ("--device", "cuda", "--half"))

    # Label agreement with eager float32 and achieved GFLOP/s.
    ref = np.load(labels["eager"]) if "eager" in labels else None
    for name, row in rows.items():
        if row.get("ok"):
            row["achieved_gflops"] = flops["gflops"] / (row["latency"]["median_ms"] / 1000.0)
            mm = machine.get("matmul_int8_gops" if "int8" in name else
                             "matmul_bf16_gflops" if "bf16" in name else "matmul_gflops")
            row["share_of_matmul_peak"] = row["achieved_gflops"] / mm if mm else None
            conv = None if "int8" in name else machine.get("conv_bf16_cl_gflops" if "bf16" in name else "conv_gflops")
            row["share_of_conv_peak"] = row["achieved_gflops"] / conv if conv else None
        if ref is not None and name in labels:
            row["label_agreement"] = agreement(np.load(labels[name]).astype(np.int64), ref.astype(np.int64))
    report.add_ratios(rows)

    def med(name: str) -> Optional[float]:
        return report.median_of(rows, name)

    default_row = {"pt2": "cpp_pt2", "plain": "cpp", "frozen": "cpp_frozen"}[default_variant]
    if med(default_row) is None and med("cpp") is not None:
        default_row = "cpp"
    network_ms, default_ms = med("network"), med(default_row)

    out: dict[str, Any] = {
        "config": config, "short": short_name(config), "height": h, "width": w,
        "weights": weights, "frames": frames_note, "iters": iters,
        "gflops": flops["gflops"], "flops": flops,
        "exports": {k: {kk: (str(vv.name) if isinstance(vv, Path) else vv) for kk, vv in v.items()}
                    for k, v in files.items()},
        "cpp_row": default_row, "cpp_file": default_variant,
        # The runtime's default path (default_row) against ORT and eager:
        "cpp_vs_onnxruntime": report.speedup(med("onnxruntime"), med(default_row)),
        "cpp_vs_eager": report.speedup(med("eager"), med(default_row)),
        "cpp_pt_vs_onnxruntime": report.speedup(med("onnxruntime"), med("cpp")),
        "cpp_pt_vs_eager": report.speedup(med("eager"), med("cpp")),
        "network_ms": network_ms,
        # Frame in / labels out minus the network alone, as a share of the default path's time.
        "share_outside_network": (1.0 - network_ms / default_ms) if network_ms and default_ms else None,
        "cpp_pt2_bf16_vs_onnxruntime": report.speedup(med("onnxruntime"), med("cpp_pt2_bf16")),
        "cpp_pt2_bf16_vs_cpp_pt2": report.speedup(med("cpp_pt2"), med("cpp_pt2_bf16")),
        "cpp_pt2_bf16_label_agreement": rows.get("cpp_pt2_bf16", {}).get("label_agreement"),
        "cpp_pt2_any_vs_cpp": report.speedup(med("cpp"), med("cpp_pt2_any")),
        "cpp_pt2_int8_vs_onnxruntime": report.speedup(med("onnxruntime"), med("cpp_pt2_int8")),
        "cpp_pt2_int8_vs_cpp_pt2": report.speedup(med("cpp_pt2"), med("cpp_pt2_int8")),
        "cpp_pt2_int8_label_agreement": rows.get("cpp_pt2_int8", {}).get("label_agreement"),
        "cpp_pt2_int8_gated": weights.startswith("trained"),
        "cpp_pt2_int8_vs_onnxruntime_int8": report.speedup(med("onnxruntime_int8"), med("cpp_pt2_int8")),
        "onnxruntime_int8_label_agreement": rows.get("onnxruntime_int8", {}).get("label_agreement"),
        "cpp_frozen_vs_onnxruntime": report.speedup(med("onnxruntime"), med("cpp_frozen")),
        "cpp_frozen_vs_eager": report.speedup(med("eager"), med("cpp_frozen")),
        "cpp_bf16_vs_cpp": report.speedup(med("cpp"), med("cpp_bf16")),
        "cpp_bf16_label_agreement": rows.get("cpp_bf16", {}).get("label_agreement"),
        "cpp_bf16_cl_vs_onnxruntime": report.speedup(med("onnxruntime"), med("cpp_bf16_cl")),
        "cpp_bf16_cl_vs_eager": report.speedup(med("eager"), med("cpp_bf16_cl")),
        "cpp_bf16_cl_label_agreement": rows.get("cpp_bf16_cl", {}).get("label_agreement"),
        "cpp_pt2_vs_onnxruntime": report.speedup(med("onnxruntime"), med("cpp_pt2")),
        "cpp_pt2_vs_eager": report.speedup(med("eager"), med("cpp_pt2")),
        "cpp_pt2_vs_cpp": report.speedup(med("cpp"), med("cpp_pt2")),
        "cpp_vs_torchscript": report.speedup(med("torchscript"), med("cpp")),
        "cpp_pt2_label_agreement": rows.get("cpp_pt2", {}).get("label_agreement"),
        "resize": args.resize, "network_size": [net_h, net_w],
        "ofi_vs_onnxruntime": report.speedup(med("onnxruntime"), med("torchscript_ofi")),
        "ofi_vs_eager": report.speedup(med("eager"), med("torchscript_ofi")),
        "onnx": onnx_info,
        "onnx_graph": "the whole SegmentationModule (uint8 BGR in, uint8 labels out: normalisation, "
                      "network, bilinear resize, argmax all inside), fixed input shape",
        "rows": rows,
    }
    cpp_fps = (rows.get(default_row, {}).get("latency") or {}).get("fps")
    if "video" not in args.skip_list and video is not None and main_file is not None and args.cli.exists():
        cli = rows.get("cpp_cli", {})
        if not (cli.get("ok") and cli.get("overlay_output")):
            cli = run_cli(args.cli, main_file, video, args.threads, work / f"{tag}.overlay.mp4", work, timeout)
        if cli.get("ok"):
            inrun = cli["latency"]["fps"]
            out["video"] = {
                "pipeline_fps": cli["pipeline_fps"], "model_only_fps": cpp_fps,
                "ratio": cli["pipeline_fps"] / cpp_fps if cpp_fps else None,
                "model_only_fps_in_run": inrun,
                "ratio_vs_in_run": cli["pipeline_fps"] / inrun if inrun else None,
                "decode_only_pipeline_fps": (rows.get("cpp_cli", {}).get("pipeline_fps")
                                             if not rows.get("cpp_cli", {}).get("overlay_output") else None),
                "frames": cli["frames"], "dropped": cli["dropped"], "target": 0.95,
                "run": cli,
                "method": "ema_seg --video FILE --benchmark --json --output overlay.mp4 (decode, model, "
                          "overlay, mp4v encode on their own threads): frames / seconds; model-only fps = "
                          "the cpp row (bindings, same file, same decoded frames, 1000 / median); "
                          "*_in_run: against ema_seg's own model_ms p50 in that run",
            }
            log(f"  video: pipeline {cli['pipeline_fps']:.2f} fps vs model-only {cpp_fps or 0:.2f} fps")
        else:
            out["video"] = {"error": cli.get("error")}
    if config in SEED_FPS:
        out["seed_fps_v100"] = SEED_FPS[config]
        cuda_row = rows.get("cpp_cuda_fp16", {})
        if cuda_row.get("ok"):
            out["cpp_cuda_fp16_vs_seed"] = cuda_row["latency"]["fps"] / SEED_FPS[config]
        out["seed_note"] = ("mmsegmentation's fps (V100, fp32) is at the config's 1024x2048 test scale; "
                            "compare with --size 1024x2048 on a CUDA machine")
    return out


# ------------------------------------------------------------------------------------ sections

def machine_section(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    info = cpu_info()
    info["torch"] = torch.__version__
    info["mkldnn"] = torch.backends.mkldnn.is_available()
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    try:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    info["threads"] = args.threads
    info["env"] = {k: v for k, v in os.environ.items()
                   if k.startswith(("OMP_", "GOMP_", "KMP_", "MKL_", "DNNL_", "ONEDNN_"))}
    if "machine" in args.skip_list:
        return info
    n = 512 if args.quick else 2048  # quick: a smoke run; bf16 and int8 without AMX take seconds at 1024
    secs = 0.3 if args.quick else 2.0
    for dtype, key in (("float32", "matmul_gflops"), ("bfloat16", "matmul_bf16_gflops"),
                       ("int8", "matmul_int8_gops")):
        res = run_worker(["--backend", "matmul", "--n", str(n), "--dtype", dtype, "--max-seconds", str(secs)],
                         args.threads, work / f"matmul_{dtype}.json", args.worker_timeout)
        info[key] = res.get("gflops_best") if res.get("ok") else None
        info[key + "_detail"] = res
        log(f"matmul {dtype} {n}x{n}: {info[key] or 0:.1f} GFLOP/s (best of {res.get('runs')})")
    # The convs' own roof (oneDNN 3x3), NCHW float32 and channels-last bfloat16.
    for dtype, cl, key in (("float32", False, "conv_gflops"), ("bfloat16", True, "conv_bf16_cl_gflops")):
        res = run_worker(["--backend", "conv", "--dtype", dtype, "--max-seconds", str(secs)]
                         + (["--channels-last"] if cl else []),
                         args.threads, work / f"conv_{dtype}.json", args.worker_timeout)
        info[key] = res.get("gflops_best") if res.get("ok") else None
        info[key + "_detail"] = res
        log(f"conv3x3 {dtype}{' channels-last' if cl else ''}: {info[key] or 0:.1f} GFLOP/s")
    return info


def ema_section(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    # 1/8 of 512x1024 and of 769x769 (ceil); --quick: only a quarter of the first.
    maps = [(32, 64)] if args.quick else [(64, 128), (97, 97)]
    runs = 2 if args.quick else 3
    rows = []
    for h, w in maps:
        for block in ("ema", "ema_unit", "non_local"):
            res = run_worker(["--backend", "block", "--block", block, "--channels", "512", "--bases", "64",
                              "--stages", "3", "--map", f"{h}x{w}", "--iters", str(runs)],
                             args.threads, work / f"block_{block}_{h}x{w}.json", args.worker_timeout)
            res.setdefault("block", block)
            res["map"] = f"{h}x{w}"
            rows.append(res)
            if res.get("ok"):
                log(f"{block} at {h}x{w}: {res['gflops']:.2f} GFLOPs, peak +{res['peak_mem_mb']:.0f} MB, "
                    f"median {res['latency']['median_ms']:.1f} ms")
            else:
                log(f"{block} at {h}x{w}: skipped ({res.get('error')})")
    by = {(r.get("block"), r.get("map")): r for r in rows}
    summary = {}
    for h, w in maps:
        key = f"{h}x{w}"
        nl = by.get(("non_local", key), {})
        if not nl.get("ok"):
            continue
        summary[key] = {}
        for block in ("ema", "ema_unit"):  # non-local / EMA: how many times more
            e = by.get((block, key), {})
            if e.get("ok"):
                summary[key][f"nonlocal_over_{block}"] = {
                    "flops": nl["gflops"] / e["gflops"],
                    "peak_memory": nl["peak_mem_mb"] / e["peak_mem_mb"] if e.get("peak_mem_mb") else None,
                    "time": nl["latency"]["median_ms"] / e["latency"]["median_ms"]}
    return {
        "rows": rows, "summary": summary,
        "blocks": {
            "ema": "emaseg.models.EMAModule alone (512 channels, 64 bases, 3 stages)",
            "ema_unit": "1x1 conv + EMAModule + 1x1 conv + residual (EMAHead's unit without its 3x3 convs)",
            "non_local": "theta/phi/g 1x1 convs to C/2, softmax over N keys, 1x1 output conv, residual",
        },
        "memory_method": "each block in a fresh process: VmHWM after its first forward minus VmRSS just "
                         "before it (input and weights already allocated); large tensors are mmapped by "
                         "glibc, so the high-water mark sees them; formula = dominant intermediates",
        "flops_method": "FlopCounterMode (2 per multiply-add) and the closed form in flops.analytic_flops",
    }


# ------------------------------------------------------------------------------------ main

def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", help="config name (repeatable; default: R-50-D8 and the demo)")
    p.add_argument("--size", help="frame size HxW for every config (default: the config's own)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resize", choices=("none", "config"), default="none",
                   help="none: the network at the frame's size (default); config: the config's test "
                        "resize inside every row, as deployed (e.g. the demo on 1080p frames)")
    p.add_argument("--quick", action="store_true", help="few runs, half-size frames: checks the tooling")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the Markdown table")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"), help="folder for JSON, PNG, Markdown")
    p.add_argument("--backends", help=f"comma list of rows (default: {','.join(BACKENDS)})")
    p.add_argument("--explore", action="store_true", help=f"also {', '.join(EXPLORE)}")
    p.add_argument("--skip", default="", help=f"comma list of sections to skip: {', '.join(SECTIONS)}")
    p.add_argument("--iters", type=int, help="timed runs per row (default: from the model's GFLOPs)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="stop timing a row after this (min 3 runs)")
    p.add_argument("--worker-timeout", type=float, default=900.0, help="kill a row's process after this")
    p.add_argument("--cpp-file", choices=("default", "plain", "frozen", "pt2"), default="default",
                   help="the runtime's path behind the cpp_cli and video rows and the cpp_vs_* keys (default: "
                        "the .pt2 compiled for the frame size, as setup.sh makes for the sample video, else "
                        "the .pt; plain: the .pt; frozen: --optimize)")
    p.add_argument("--onnx-exporter", choices=("auto", "dynamo", "legacy"), default="auto",
                   help="auto: dynamo, then legacy if it fails or disagrees")
    p.add_argument("--cli", default=str(ROOT / "build" / "ema_seg"), help="the ema_seg binary")
    p.add_argument("--omp-wait-policy", choices=("inherit", "passive", "active"), default="inherit",
                   help="OMP_WAIT_POLICY of every measured process (inherit: this environment's). "
                        "On a shared machine, passive avoids OpenMP spin-wait collapse")
    p.add_argument("--no-cuda", dest="cuda", action="store_false", help="no CUDA rows even with a GPU")
    p.add_argument("--work-dir", help="keep intermediate files (exports, frames, worker JSON) here")
    return p


def main(args: argparse.Namespace) -> int:
    global OMP_WAIT_POLICY
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("onnxscript").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    import torch

    for name in ("torch.onnx", "torch.onnx._internal.exporter._registration", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)

    torch.set_num_threads(args.threads)
    configs = args.config or list(DEFAULT_CONFIGS)
    from emaseg.config import CONFIGS
    for c in configs:
        if c not in CONFIGS:
            raise SystemExit(f"benchmark: error: unknown config {c!r}; known: {', '.join(sorted(CONFIGS))}")
    args.backend_list = [b.strip() for b in args.backends.split(",")] if args.backends else list(BACKENDS)
    if args.explore:
        args.backend_list += [b for b in EXPLORE if b not in args.backend_list]
    unknown = set(args.backend_list) - set(BACKENDS) - set(EXPLORE)
    if unknown:
        raise SystemExit(f"benchmark: error: unknown backend(s) {', '.join(sorted(unknown))}")
    if "onnxruntime" in args.backend_list and "eager" not in args.backend_list:
        args.backend_list.insert(0, "eager")  # ORT's export is verified against eager's labels
    args.skip_list = {s.strip() for s in args.skip.split(",") if s.strip()}
    args.onnx_exporters = ("dynamo", "legacy") if args.onnx_exporter == "auto" else (args.onnx_exporter,)
    args.cli = Path(args.cli)
    if args.omp_wait_policy != "inherit":
        OMP_WAIT_POLICY = args.omp_wait_policy.upper()
    load_start = os.getloadavg()[0]
    if load_start > 0.5:
        log(f"warning: load average {load_start:.1f} before starting: the CPU is not quiet, numbers will "
            "be noisy (LibTorch's OpenMP threads collapse when they share cores; try --omp-wait-policy passive)")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="emaseg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        machine = machine_section(args, work)
        results = []
        for c in (configs if "rows" not in args.skip_list else []):
            size = parse_size(args.size) if args.size else DEFAULT_SIZES.get(c, None)
            if size is None:
                from emaseg.config import get_config
                size = tuple(get_config(c).data.crop_size)
            if args.quick and not args.size:
                size = (max(64, size[0] // 2 // 8 * 8), max(64, size[1] // 2 // 8 * 8))
            results.append(bench_config(c, size, args, work, machine))
        ema = ema_section(args, work) if "ema" not in args.skip_list else None
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {
        "quick": args.quick,
        "threads": args.threads,
        "seconds": time.perf_counter() - t0,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine,
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "omp_wait_policy": OMP_WAIT_POLICY or os.environ.get("OMP_WAIT_POLICY") or "default (unset)",
        "configs": results,
        "cpp_vs_onnxruntime": {r["config"]: r["cpp_vs_onnxruntime"] for r in results},
        "cpp_vs_eager": {r["config"]: r["cpp_vs_eager"] for r in results},
        "targets": {"cpp_vs_onnxruntime": 1.2, "cpp_vs_eager": 1.3, "video_pipeline_vs_model_only": 0.95,
                    "note": "for R-50-D8 at 512x1024, float32, 2 threads, on a quiet machine"},
        "ema_vs_nonlocal": ema,
        "latency_method": "per-frame wall clock around one call (frame in, labels out) after warm-up "
                          f"calls (models under {HEAVY_GFLOPS:g} GFLOPs: {WARMUP['light']['other']} eager/ORT, "
                          f"{WARMUP['light']['torch']} TorchScript/C++; heavier: {WARMUP['heavy']['other']} "
                          f"and {WARMUP['heavy']['torch']}), each row in its own process",
    }
    md = report.markdown(result)
    # Atomic: an interrupted run never leaves a half-written report under the final name.
    write_atomic(out_dir / "benchmark.json", json.dumps(result, indent=1, default=str))
    write_atomic(out_dir / "benchmark.md", md + "\n")
    try:
        if results:
            report.chart(result, out_dir / "benchmark.png")
    except Exception as e:  # a chart failing must not lose the numbers
        log(f"chart failed: {e}")
    log(f"done in {result['seconds']:.0f} s: {out_dir / 'benchmark.json'}, benchmark.png, benchmark.md")
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
