#!/usr/bin/env python3
"""The default model at every camera's frame size, through the CLI a user runs.

    python scripts/benchmark_frame_sizes.py [--sizes 720x1280,480x640,...] [--threads 2] [--frames 30]
        [--repeat 3] [--baseline DIR] [--end-to-end] [--out docs/benchmarks/frame_sizes]

For each frame size (HxW; default: the common webcams, 4:3 and 16:9 camera sizes, portrait phone
video, 4K, the sample's 2:1 and an aspect ratio set-up does not compile), the sample video resized
to it (mp4v), then `ema_seg --video V --benchmark --json` with no --model (the default model
setup.sh makes): model-only latency p50 / p95, and its ratio to the first size's (720p by default)
and, for portrait sizes, to the landscape size it mirrors. Whether the package holds a network
compiled for the frame's network size, or the frame ran on its any-size network, is read off the
CLI's stderr note.

`--baseline DIR`: the same videos through DIR/build/ema_seg and DIR/models/emanet_demo.pt2 (another
checkout, e.g. a `git worktree` of an earlier commit, built and set up), in the same run: the
"vs baseline" column. `--end-to-end`: also `ema_seg --video V --output O.mp4` fps.
All in one run on one machine: compare these numbers with each other only. Writes
frame_sizes.json, frame_sizes.md and frame_sizes.png to --out and prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

DEFAULT_SIZES = ("720x1280,480x640,600x800,768x1024,1080x1440,1080x1920,1920x1080,2160x3840,"
                 "256x512,1520x2704,700x1000")


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


def cli(root: Path, args: list[str], threads: int) -> tuple[dict, str]:
    """The --json report and stderr of `root`/build/ema_seg run in `root` (its default model)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    run = subprocess.run([str(root / "build" / "ema_seg"), *args, "--threads", str(threads), "--json"],
                         capture_output=True, text=True, cwd=root, env=env)
    if run.returncode != 0:
        raise SystemExit(f"{root}/build/ema_seg {' '.join(args)} failed: {run.stderr.strip()}")
    return json.loads(run.stdout), run.stderr


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    x = range(len(rows))
    width = 0.4 if any("baseline_p50_ms" in r for r in rows) else 0.8
    ax.bar([i - (width / 2 if width < 0.8 else 0) for i in x], [r["model_p50_ms"] for r in rows], width,
           label="this build", color=["#2a7" if r["compiled"] else "#e93" for r in rows])
    if width < 0.8:
        ax.bar([i + width / 2 for i in x], [r.get("baseline_p50_ms", 0) for r in rows], width, label="baseline",
               color="#999")
    ax.set_xticks(list(x), [r["size"] for r in rows], rotation=30)
    ax.set_ylabel("model-only p50 ms (CLI)")
    ax.set_title("Default model by frame size (green: compiled network size, orange: any-size network)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=DEFAULT_SIZES, help="HxW,HxW,... (the first is the reference row)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=30, help="frames per video")
    p.add_argument("--baseline", metavar="DIR", help="another checkout, built and set up, to run beside this one")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs per size (alternating with the baseline's): the median p50 is reported, since "
                        "one run on a shared machine moves by 10-20%%")
    p.add_argument("--end-to-end", action="store_true", help="also time ema_seg --output (decode, overlay, encode)")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "frame_sizes"))
    args = p.parse_args()
    from tqdm import tqdm

    from emaseg.atomic import atomic_open
    from emaseg.cli import parse_size

    sizes = [parse_size(text.strip(), "--sizes") for text in args.sizes.split(",")]
    baseline = Path(args.baseline).resolve() if args.baseline else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in tqdm(sizes, desc="frame sizes", unit="size"):
            video = resized_video(ROOT / "data" / "sample" / "street.mp4", (h, w), args.frames, Path(tmp) / f"{h}x{w}.mp4")
            runs, old_runs = [], []
            for _ in range(args.repeat):
                runs.append(cli(ROOT, ["--video", str(video), "--benchmark"], args.threads))
                if baseline is not None:
                    old_runs.append(cli(baseline, ["--video", str(video), "--benchmark"], args.threads)[0])
            bench, stderr = sorted(runs, key=lambda r: r[0]["model_ms"]["p50"])[len(runs) // 2]
            row = {"size": f"{h}x{w}", "model": bench["model"], "model_p50_ms": bench["model_ms"]["p50"],
                   "model_p95_ms": bench["model_ms"]["p95"], "compiled": "any-size model" not in stderr,
                   "runs_p50_ms": [r[0]["model_ms"]["p50"] for r in runs]}
            if baseline is not None:
                p50s = sorted(r["model_ms"]["p50"] for r in old_runs)
                row["baseline_p50_ms"], row["baseline_runs_p50_ms"] = p50s[len(p50s) // 2], p50s
            if args.end_to_end:
                e2e, _ = cli(ROOT, ["--video", str(video), "--output", str(Path(tmp) / f"o{h}x{w}.mp4")], args.threads)
                row["end_to_end_fps"], row["codec"] = e2e["fps"], e2e.get("codec")
            rows.append(row)
    base = rows[0]["model_p50_ms"]
    by_size = {r["size"]: r for r in rows}
    head = f"| frame (HxW) | network | model p50 ms | p95 ms | vs {rows[0]['size']} | vs landscape |"
    rule = "|---|---|---:|---:|---:|---:|"
    if baseline is not None:
        head, rule = head + " baseline p50 ms | vs baseline |", rule + "---:|---:|"
    if args.end_to_end:
        head, rule = head + " end to end fps |", rule + "---:|"
    lines = [head, rule]
    for r in rows:
        h, w = r["size"].split("x")
        mirror = by_size.get(f"{w}x{h}") if int(h) > int(w) else None
        r["vs_first"] = r["model_p50_ms"] / base
        if mirror is not None:
            r["vs_landscape"] = r["model_p50_ms"] / mirror["model_p50_ms"]
        line = (f"| {r['size']} | {'compiled' if r['compiled'] else 'any-size'} | {r['model_p50_ms']:.1f} | "
                f"{r['model_p95_ms']:.1f} | {r['vs_first']:.2f}x | "
                f"{'%.2fx' % r['vs_landscape'] if 'vs_landscape' in r else '-'} |")
        if baseline is not None:
            r["vs_baseline"] = r["model_p50_ms"] / r["baseline_p50_ms"]
            line += f" {r['baseline_p50_ms']:.1f} | {r['vs_baseline']:.2f}x |"
        if args.end_to_end:
            line += f" {r['end_to_end_fps']:.1f} ({r['codec']}) |"
        lines.append(line)
    cpu = cpu_name()
    table = "\n".join(lines) + (f"\n\n{cpu}, {args.threads} threads, {args.frames} frames per size, the median "
                                 f"of {args.repeat} runs' p50 each.\n")
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "frame_sizes.json", "w") as f:
        json.dump({"cpu": cpu, "threads": args.threads, "frames": args.frames, "rows": rows}, f, indent=1)
    with atomic_open(out / "frame_sizes.md", "w") as f:
        f.write(table)
    plot(rows, out / "frame_sizes.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
