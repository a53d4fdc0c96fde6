#!/usr/bin/env python3
"""The default model at every camera's frame size, through the CLI a user runs.

    python scripts/benchmark_frame_sizes.py [--sizes 256x512,720x1280,...] [--threads 2] [--frames 40]
        [--out docs/benchmarks/frame_sizes] [--no-network]

For each frame size (default: the sample video's 256x512, 720p, 1080p, 4K and an odd 700x1000):
the sample video resized to it (mp4v), then
- `ema_seg --video V --benchmark --json` with no --model (the default model setup.sh makes):
  model-only latency p50 / p95, and its ratio to the first size's;
- `ema_seg --video V --output O.mp4 --json`: end-to-end fps (decode, model, overlay, H.264 or
  mp4v encode, each on its own thread), and the codec it wrote;
- the same model file through the C++ runtime's bindings on the decoded frames with nothing
  beside it (the CLI's model time includes sharing the 2 cores with its decoding thread);
- the network alone, compiled (AOTInductor) for that size's network input, in this process with
  the same threads: the share of the model time spent outside the network.
All in one run on one machine: compare these numbers with each other only. Writes
frame_sizes.json and frame_sizes.md to --out and prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

DEFAULT_SIZES = "256x512,720x1280,1080x1920,2160x3840,700x1000"


def resized_video(source: Path, size: tuple[int, int], frames: int, out: Path) -> Path:
    import cv2

    cap = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 10, (size[1], size[0]))
    written = 0
    while written < frames:
        ok, frame = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        writer.write(cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR))
        written += 1
    writer.release()
    return out


def cli(args: list[str], threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    run = subprocess.run([str(ROOT / "build" / "ema_seg"), *args, "--threads", str(threads), "--json", "--quiet"],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    if run.returncode != 0:
        raise SystemExit(f"ema_seg {' '.join(args)} failed: {run.stderr.strip()}")
    return json.loads(run.stdout)


RUNTIME_ALONE = """
import sys, time, cv2
from emaseg import runtime
segmenter = runtime.Segmenter(sys.argv[2], threads=int(sys.argv[3]))
capture, frames = cv2.VideoCapture(sys.argv[1]), []
while True:
    ok, frame = capture.read()
    if not ok:
        break
    frames.append(frame)
for frame in frames[:3]:
    segmenter.segment(frame)
times = []
for frame in frames:
    t0 = time.perf_counter()
    segmenter.segment(frame)
    times.append((time.perf_counter() - t0) * 1000)
print(sorted(times)[len(times) // 2])
"""


def runtime_ms(video: Path, model: str, threads: int) -> float:
    """Median ms of `Segmenter.segment` (the C++ runtime through the bindings) on the decoded
    frames, nothing else running: the model's time without the CLI's decoding thread beside it."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    run = subprocess.run([sys.executable, "-c", RUNTIME_ALONE, str(video), str(ROOT / model), str(threads)],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    if run.returncode != 0:
        raise SystemExit(f"the runtime alone failed on {video.name}: {run.stderr.strip()}")
    return float(run.stdout.strip().splitlines()[-1])


def network_ms(size: tuple[int, int], threads: int, cache: dict) -> float:
    """Median ms of the demo network alone (normalised input at the network size), compiled."""
    import torch
    from torch._inductor import aoti_compile_and_package, aoti_load_package

    from emaseg.export.exporter import build_module

    module, _ = build_module(ROOT / "models" / "emanet_demo.pth", mode=None, resize=None, flip=False,
                             dtype="float32", device="cpu")
    net_size = module.network_size(*size)
    if net_size not in cache:
        torch.set_num_threads(threads)
        x = torch.randn(1, 3, *net_size)
        with torch.no_grad():
            program = torch.export.export(module.seg, (x,))
            with tempfile.TemporaryDirectory() as tmp:
                path = aoti_compile_and_package(program, package_path=f"{tmp}/net.pt2",
                                                inductor_configs={"freezing": True})
                net = aoti_load_package(path)
                for _ in range(3):
                    net(x)
                times = []
                for _ in range(15):
                    t0 = time.perf_counter()
                    net(x)
                    times.append((time.perf_counter() - t0) * 1000)
        cache[net_size] = sorted(times)[len(times) // 2]
    return cache[net_size]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=DEFAULT_SIZES, help="HxW,HxW,... (the first is the reference row)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=40, help="frames per video")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "frame_sizes"))
    p.add_argument("--no-network", action="store_true", help="skip compiling the network alone")
    args = p.parse_args()
    from emaseg.atomic import atomic_open
    from emaseg.cli import parse_size

    sizes = [parse_size(text.strip(), "--sizes") for text in args.sizes.split(",")]
    rows, cache = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in sizes:
            video = resized_video(ROOT / "data" / "sample" / "street.mp4", (h, w), args.frames, Path(tmp) / f"{h}x{w}.mp4")
            bench = cli(["--video", str(video), "--benchmark"], args.threads)
            e2e = cli(["--video", str(video), "--output", str(Path(tmp) / f"o{h}x{w}.mp4")], args.threads)
            row = {"size": f"{h}x{w}", "model": bench["model"], "model_p50_ms": bench["model_ms"]["p50"],
                   "model_p95_ms": bench["model_ms"]["p95"], "end_to_end_fps": e2e["fps"],
                   "codec": e2e.get("codec"), "runtime_alone_ms": runtime_ms(video, bench["model"], args.threads)}
            if not args.no_network:
                row["network_ms"] = network_ms((h, w), args.threads, cache)
                row["share_outside_network"] = 1 - row["network_ms"] / row["runtime_alone_ms"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = rows[0]["model_p50_ms"]
    lines = [f"| frame | CLI model p50 ms | fps | vs {rows[0]['size']} | runtime alone ms (fps) | network ms | "
             "outside network | end to end fps |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        r["vs_first"] = r["model_p50_ms"] / base
        net = f"{r['network_ms']:.1f} | {r['share_outside_network']:.0%}" if "network_ms" in r else "- | -"
        lines.append(f"| {r['size']} | {r['model_p50_ms']:.1f} | {1000 / r['model_p50_ms']:.1f} | "
                     f"{r['vs_first']:.2f}x | {r['runtime_alone_ms']:.1f} ({1000 / r['runtime_alone_ms']:.1f}) | {net} | {r['end_to_end_fps']:.1f} ({r['codec'] or '?'}) |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "frame_sizes.json", "w") as f:
        json.dump({"threads": args.threads, "frames": args.frames, "rows": rows}, f, indent=1)
    with atomic_open(out / "frame_sizes.md", "w") as f:
        f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
