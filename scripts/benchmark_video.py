#!/usr/bin/env python3
"""The video path end to end (decode + model + overlay + encode) against the model alone, by frame size.

    python scripts/benchmark_video.py [--sizes 1280x720,1920x1080,3840x2160] [--frames 60] [--repeat 3]
        [--threads 2] [--model models/emanet_demo.pt2] [--extra-args=--optimize]
        [--presets ultrafast,superfast,veryfast] [--preset-size 1920x1080] [--crf 23]
        [--binary build/ema_seg] [--out-dir docs/benchmarks/video]

Reproduce the published run (docs/benchmarks/video/) with the defaults:

    python scripts/benchmark_video.py

Sizes are WxH (width x height, as ffmpeg's -s writes them; the frame-size benchmark's are HxW).
For each size, a camera-like H.264 file (libx264, preset medium, CRF 20, yuv420p, 30 fps) of
--frames frames of data/sample/street.mp4 upscaled with cv2.resize (looped if short), made once by
apt's ffmpeg (`apt-get install ffmpeg`) and cached in build/benchmark-video/. Then, --repeat times,
alternating:

  model only:  ema_seg --video V --benchmark --json --threads T --quiet --model M
               fps = 1000 / model_ms.p50 (--benchmark decodes in turns with the model: the model alone)
  end to end:  ema_seg --video V --output TMP/out.mp4 --json --threads T --quiet --model M [EXTRA]
               fps = frames / wall seconds, and the per-frame p50s stages_ms.{decode,model,overlay,encode}

with OMP_NUM_THREADS=T and OMP_WAIT_POLICY=PASSIVE. Stage times: decode, overlay and encode are the
CPU ms of the thread doing that stage (they run in the background beside the model, so their wall
time would include waiting); model is wall ms (model_ms). Per size: both fps (median of the runs),
their ratio end to end / model only (median of the per-repeat ratios, and each one), the "CPU ms
outside the model" = decode + overlay + encode CPU ms (p50s), and each stage's share of the sum of
the four; "n/a" where the CLI reports no stages_ms.

Then the preset table, at --preset-size (default 1920x1080): for each of --presets (libx264; default
ultrafast,superfast,veryfast; "" skips it), --repeat end-to-end runs as above with
--preset P --crf C (--crf, default 23; any --preset/--crf in EXTRA is dropped there), the presets
alternating. Per preset: the encode CPU ms p50 (median of the runs), the overlay file's size in MB
(10^6 bytes) and Mbit/s (size * 8 / (frames / 30 fps)), the end-to-end fps (median) and its ratio to
the model-only fps of that size (from the main runs; measured alongside, --repeat times, when the
size is not in --sizes).

All in one run on one machine: compare these numbers with each other only. Writes results.json
(every raw report, the command lines, the CPU, the date; the preset runs under "presets"), video.md
(the tables) and video.png (per size the stage p50s stacked, and the end-to-end and model-only frame
times) to --out-dir and prints the tables. A failing ema_seg run stops the benchmark with its
stderr and exit status 1.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
from emaseg.cli import int_at_least  # noqa: E402  (after the path is set)

DEFAULT_SIZES = "1280x720,1920x1080,3840x2160"
SOURCE = ROOT / "data" / "sample" / "street.mp4"
CACHE = ROOT / "build" / "benchmark-video"
FPS = 30
STAGES = ("decode", "model", "overlay", "encode")
OUTSIDE = ("decode", "overlay", "encode")
STAGE_COLORS = {"decode": "#59a", "model": "#2a7", "overlay": "#e93", "encode": "#c55"}
STAGE_UNIT = {"decode": "CPU ms", "model": "ms (wall)", "overlay": "CPU ms", "encode": "CPU ms"}
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
DEFAULT_PRESETS = "ultrafast,superfast,veryfast"
# Targets for reference (the video-path issue), by WxH: end to end / model only at least
# min_ratio; CPU ms per frame outside the model at most max_outside_ms.
TARGETS: dict[str, dict[str, float]] = {
    "1920x1080": {"min_ratio": 0.90, "max_outside_ms": 12.0},
    "3840x2160": {"min_ratio": 0.85},
}


class BenchmarkError(Exception):
    """A step failed; the message is what the user needs (the command, its exit status, its stderr)."""


# ------------------------------------------------------------------------------------ inputs

def parse_wxh(text: str) -> tuple[int, int]:
    """"1920x1080" -> (1920, 1080): width, height; an even size of at least 16x16 (H.264 yuv420p)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expects WxH (width x height) like 1920x1080, got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"{w}x{h} must be even and at least 16x16 (H.264, yuv420p)")
    return w, h


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = [parse_wxh(part) for part in text.split(",") if part.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError("no size given")
    return sizes


def parse_presets(text: str) -> list[str]:
    """"ultrafast,veryfast" -> the libx264 presets, in order, each once; "" -> [] (no preset table)."""
    presets: list[str] = []
    for part in (x.strip() for x in text.split(",")):
        if not part:
            continue
        if part not in PRESETS:
            raise argparse.ArgumentTypeError(f"unknown preset {part!r}: one of {', '.join(PRESETS)}")
        if part not in presets:
            presets.append(part)
    return presets


def without_encoder_args(args: list[str]) -> list[str]:
    """`args` less --preset/--crf and their values (ema_seg refuses an option given twice)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--preset", "--crf"):
            skip = True
        elif not arg.startswith(("--preset=", "--crf=")):
            out.append(arg)
    return out


def crf_value(text: str) -> int:
    value = int_at_least(0)(text)
    if value > 51:
        raise argparse.ArgumentTypeError(f"must be at most 51, got {value}")
    return value


def ffmpeg_binary() -> str:
    found = shutil.which("ffmpeg")
    if found is None:
        raise BenchmarkError("ffmpeg not found on PATH: the inputs are encoded with apt's ffmpeg "
                             "(sudo apt-get install ffmpeg)")
    return found


def source_frames(source: Path, frames: int) -> list:
    """`frames` frames of `source`, looped from its start when it is shorter."""
    import cv2

    if not source.is_file():
        raise BenchmarkError(f"{source} is missing: bash scripts/setup.sh generates it")
    cap = cv2.VideoCapture(str(source))
    out: list = []
    while len(out) < frames:
        ok, frame = cap.read()
        if not ok:
            if not out:
                raise BenchmarkError(f"cannot read a frame of {source}")
            cap.release()
            cap = cv2.VideoCapture(str(source))  # loop: reopening is exact where seeking may not be
            continue
        out.append(frame)
    cap.release()
    return out


def h264_video(size: tuple[int, int], frames: int, cache: Path) -> Path:
    """The cached camera-like H.264 file of `frames` upscaled sample frames at `size` (WxH), made
    once (again when the sample is newer) by piping raw BGR frames to ffmpeg's libx264."""
    import cv2
    from tqdm import tqdm

    from emaseg.atomic import atomic_path

    w, h = size
    out = cache / f"street_{w}x{h}_{frames}f_{FPS}fps_crf20.mp4"
    if out.is_file() and out.stat().st_mtime >= SOURCE.stat().st_mtime:
        return out
    ffmpeg = ffmpeg_binary()
    cache.mkdir(parents=True, exist_ok=True)
    frames_in = source_frames(SOURCE, frames)
    with atomic_path(out, suffix=".mp4") as tmp, tempfile.TemporaryFile() as log:
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
               "-s", f"{w}x{h}", "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "medium",
               "-crf", "20", "-pix_fmt", "yuv420p", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        try:
            for frame in tqdm(frames_in, desc=f"encode {w}x{h} input", unit="frame", leave=False):
                proc.stdin.write(cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR).tobytes())
        except BrokenPipeError:
            pass  # ffmpeg exited early: its status and log below say why
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            code = proc.wait()
        if code != 0:
            log.seek(0)
            raise BenchmarkError(f"ffmpeg failed (exit {code}) making {out.name}:\n  {shlex.join(cmd)}\n"
                                 + log.read().decode(errors="replace").strip())
    return out


# ------------------------------------------------------------------------------------ runs

def child_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}


def run_cli(cmd: list[str], threads: int) -> dict[str, Any]:
    """The --json report of one ema_seg run; BenchmarkError with its stderr when it fails."""
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=child_env(threads))
    if run.returncode != 0:
        raise BenchmarkError(f"ema_seg failed (exit {run.returncode}):\n  {shlex.join(cmd)}\n"
                             + (run.stderr.strip() or "(no stderr)"))
    try:
        return json.loads(run.stdout)
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"ema_seg printed no JSON report ({e}):\n  {shlex.join(cmd)}\n"
                             f"stdout: {run.stdout.strip()[:2000]}\nstderr: {run.stderr.strip()}") from None


def stage_p50(report: dict[str, Any], stage: str) -> Optional[float]:
    """stages_ms.<stage>.p50 of an end-to-end report, None where the CLI does not report it."""
    value = (report.get("stages_ms") or {}).get(stage)
    if isinstance(value, dict) and isinstance(value.get("p50"), (int, float)):
        return float(value["p50"])
    return None


def median_or_none(values: list[Optional[float]]) -> Optional[float]:
    return statistics.median(values) if values and all(v is not None for v in values) else None


def summarize(size: str, model_runs: list[dict], e2e_runs: list[dict]) -> dict[str, Any]:
    """The row of one size: medians over the repeats, and each repeat's numbers."""
    model_fps = [1000.0 / r["model_ms"]["p50"] if r["model_ms"]["p50"] > 0 else 0.0 for r in model_runs]
    e2e_fps = [float(r["fps"]) for r in e2e_runs]
    ratios = [e / m if m > 0 else 0.0 for e, m in zip(e2e_fps, model_fps)]
    stages = {s: median_or_none([stage_p50(r, s) for r in e2e_runs]) for s in STAGES}
    outside_runs = [sum(stage_p50(r, s) for s in OUTSIDE) if all(stage_p50(r, s) is not None for s in OUTSIDE)
                    else None for r in e2e_runs]
    total = sum(stages.values()) if all(v is not None for v in stages.values()) else None
    row: dict[str, Any] = {
        "size": size,
        "model_only_fps": statistics.median(model_fps),
        "model_only_p50_ms": statistics.median(r["model_ms"]["p50"] for r in model_runs),
        "end_to_end_fps": statistics.median(e2e_fps),
        "ratio": statistics.median(ratios),
        "runs_model_only_fps": model_fps,
        "runs_end_to_end_fps": e2e_fps,
        "runs_ratio": ratios,
        "stages_p50_ms": stages,
        "outside_model_ms": median_or_none(outside_runs),
        "runs_outside_model_ms": outside_runs,
        "stage_share": {s: v / total for s, v in stages.items()} if total else None,
        "codec": e2e_runs[0].get("codec"),
        "decoder": e2e_runs[0].get("decoder"),
    }
    row["end_to_end_frame_ms"] = 1000.0 / row["end_to_end_fps"] if row["end_to_end_fps"] > 0 else None
    target = TARGETS.get(size)
    if target is not None:
        row["targets"] = dict(target)
        row["ratio_met"] = row["ratio"] >= target["min_ratio"]
        if "max_outside_ms" in target:
            row["outside_met"] = (None if row["outside_model_ms"] is None
                                  else row["outside_model_ms"] <= target["max_outside_ms"])
    return row


def summarize_preset(preset: str, runs: list[dict], sizes_bytes: list[int], frames: int,
                     model_only_fps: float) -> dict[str, Any]:
    """The preset table's row of one preset: medians over its runs, and each run's numbers."""
    seconds = frames / FPS
    e2e_fps = [float(r["fps"]) for r in runs]
    encode = [stage_p50(r, "encode") for r in runs]
    size_mb = statistics.median(sizes_bytes) / 1e6
    fps = statistics.median(e2e_fps)
    return {
        "preset": preset,
        "encode_cpu_p50_ms": median_or_none(encode),
        "size_mb": size_mb,
        "mbit_per_s": size_mb * 8 / seconds,
        "end_to_end_fps": fps,
        "ratio": fps / model_only_fps if model_only_fps > 0 else 0.0,
        "runs_encode_cpu_p50_ms": encode,
        "runs_bytes": sizes_bytes,
        "runs_end_to_end_fps": e2e_fps,
    }


# ------------------------------------------------------------------------------------ report

def cpu_info() -> dict[str, Any]:
    """lscpu's model name and flags (/proc/cpuinfo where lscpu is missing): avx2, avx512f, amx."""
    name, flags = "", set()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name" and not name:
                name = value.strip()
            elif key.strip() == "Flags":
                flags = set(value.split())
    except OSError:
        pass
    if not flags:
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name") and not name:
                        name = line.split(":", 1)[1].strip()
                    elif line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    isa = {"avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
           "amx": any(f.startswith("amx") for f in flags)}
    return {"name": name or platform.processor() or "unknown CPU", "cores": os.cpu_count(), "isa": isa,
            "amx_flags": sorted(f for f in flags if f.startswith("amx"))}


def cpu_line(cpu: dict[str, Any]) -> str:
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cpu["isa"].items())
    return f"CPU: {cpu['name']} ({cpu['cores']} logical cores; {isa})"


def targets_line() -> str:
    parts = []
    for size, t in TARGETS.items():
        part = f"end to end / model only >= {t['min_ratio']:.2f} at {size}"
        if "max_outside_ms" in t:
            part += f", CPU ms outside the model <= {t['max_outside_ms']:g} at {size}"
        parts.append(part)
    return "Targets (for reference): " + "; ".join(parts)


def fmt(value: Optional[float], spec: str = ".1f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def tables(rows: list[dict]) -> str:
    lines = ["| frame (WxH) | model-only fps | end-to-end fps | end to end / model only (runs) | "
             "CPU ms outside the model | target |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        runs = ", ".join(f"{x:.2f}" for x in r["runs_ratio"])
        target = "-"
        if "targets" in r:
            t = r["targets"]
            target = f"ratio >= {t['min_ratio']:.2f}: {'met' if r['ratio_met'] else 'missed'}"
            if "max_outside_ms" in t:
                met = r["outside_met"]
                target += (f"; outside <= {t['max_outside_ms']:g} ms: "
                           f"{'n/a' if met is None else 'met' if met else 'missed'}")
        lines.append(f"| {r['size']} | {r['model_only_fps']:.1f} | {r['end_to_end_fps']:.1f} | "
                     f"{r['ratio']:.2f} ({runs}) | {fmt(r['outside_model_ms'])} | {target} |")
    lines += ["", "| frame (WxH) | " + " | ".join(f"{s} p50 {STAGE_UNIT[s]} (share)" for s in STAGES) + " | "
              "end-to-end frame ms | model-only p50 ms |",
              "|---|" + "---:|" * (len(STAGES) + 2)]
    for r in rows:
        cells = []
        for s in STAGES:
            ms = r["stages_p50_ms"][s]
            share = r["stage_share"][s] if r["stage_share"] else None
            cells.append("n/a" if ms is None else f"{ms:.1f} ({fmt(share and 100 * share, '.0f', '%')})")
        lines.append(f"| {r['size']} | " + " | ".join(cells) + f" | {fmt(r['end_to_end_frame_ms'])} | "
                     f"{r['model_only_p50_ms']:.1f} |")
    return "\n".join(lines)


def preset_table(presets: dict[str, Any]) -> str:
    lines = [f"| preset ({presets['size']}, CRF {presets['crf']}) | encode p50 CPU ms | overlay MB | Mbit/s | "
             "end-to-end fps | end to end / model only |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in presets["rows"]:
        lines.append(f"| {r['preset']} | {fmt(r['encode_cpu_p50_ms'])} | {r['size_mb']:.2f} | "
                     f"{r['mbit_per_s']:.2f} | {r['end_to_end_fps']:.1f} | {r['ratio']:.2f} |")
    return "\n".join(lines)


def plot(rows: list[dict], cpu: str, threads: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = list(range(len(rows)))
    bottom = [0.0] * len(rows)
    for s in STAGES:
        values = [r["stages_p50_ms"][s] for r in rows]
        if all(v is None for v in values):
            continue
        heights = [v or 0.0 for v in values]
        ax.bar(x, heights, 0.55, bottom=bottom, label=f"{s} p50, {STAGE_UNIT[s]} (end-to-end run)",
               color=STAGE_COLORS[s])
        bottom = [b + v for b, v in zip(bottom, heights)]
    if not any(bottom):
        ax.text(0.5, 0.95, "stage times n/a (the CLI reports no stages_ms)", transform=ax.transAxes,
                ha="center", va="top", color="#777")
    ax.plot(x, [r["end_to_end_frame_ms"] or float("nan") for r in rows], "D-", color="black",
            label="end to end: 1000 / fps, ms (wall)")
    ax.plot(x, [r["model_only_p50_ms"] for r in rows], "o--", color="#a2a", label="model only: p50, ms (wall)")
    ax.set_xticks(x, [r["size"] for r in rows])
    ax.set_xlabel("frame size (WxH), H.264 input")
    ax.set_ylabel("ms per frame (decode, overlay, encode: CPU ms)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"ema_seg video path, {threads} threads, {cpu}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def git_commit() -> Optional[str]:
    try:
        run = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT)
        return run.stdout.strip() or None
    except OSError:
        return None


# ------------------------------------------------------------------------------------ main

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes(DEFAULT_SIZES),
                   help=f"WxH,WxH,... (width x height; default {DEFAULT_SIZES})")
    p.add_argument("--frames", type=int_at_least(1), default=60, help="frames per input video (default 60)")
    p.add_argument("--repeat", type=int_at_least(1), default=3,
                   help="runs of each kind per size, alternating (default 3): the median is reported, since "
                        "one run on a shared machine moves by 10-20%%")
    p.add_argument("--threads", type=int_at_least(1), default=2, help="ema_seg --threads and OMP_NUM_THREADS")
    p.add_argument("--model", default=str(ROOT / "models" / "emanet_demo.pt2"))
    p.add_argument("--extra-args", default="", metavar="ARGS",
                   help='more ema_seg arguments for the end-to-end runs, one shell-quoted string, e.g. '
                        '--extra-args "--preset veryfast" (a single option: --extra-args=--optimize); '
                        'the preset runs drop its --preset and --crf')
    p.add_argument("--presets", type=parse_presets, default=parse_presets(DEFAULT_PRESETS), metavar="LIST",
                   help=f"libx264 presets for the preset table (default {DEFAULT_PRESETS}; \"\" skips it)")
    p.add_argument("--preset-size", type=parse_wxh, default=parse_wxh("1920x1080"), metavar="WxH",
                   help="frame size of the preset runs (default 1920x1080)")
    p.add_argument("--crf", type=crf_value, default=23, help="ema_seg --crf of the preset runs, 0..51 (default 23)")
    p.add_argument("--binary", default=str(ROOT / "build" / "ema_seg"))
    p.add_argument("--out-dir", default=str(ROOT / "docs" / "benchmarks" / "video"))
    args = p.parse_args()
    try:
        return run(args)
    except BenchmarkError as e:
        print(f"benchmark_video: {e}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from emaseg.atomic import atomic_open, atomic_path

    binary, model = Path(args.binary).resolve(), Path(args.model).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise BenchmarkError(f"{binary} is not an executable: build it (bash scripts/setup.sh) or pass --binary")
    if not model.is_file():
        raise BenchmarkError(f"{model} is missing: bash scripts/setup.sh makes the default model, or pass --model")
    extra = shlex.split(args.extra_args)
    cpu = cpu_info()
    print(cpu_line(cpu))
    print(targets_line())
    preset_extra = without_encoder_args(extra)
    preset_size = "{}x{}".format(*args.preset_size)
    print(f"{args.threads} threads, {args.frames} frames per size, {args.repeat} runs of each kind, "
          f"model {model}, end-to-end extra args: {shlex.join(extra) or '(none)'}", flush=True)
    if args.presets:
        print(f"presets at {preset_size}, CRF {args.crf}: {', '.join(args.presets)}; "
              f"extra args: {shlex.join(preset_extra) or '(none)'}", flush=True)
    print(flush=True)

    videos = {f"{w}x{h}": h264_video((w, h), args.frames, CACHE) for w, h in args.sizes}
    if args.presets and preset_size not in videos:
        preset_video = h264_video(args.preset_size, args.frames, CACHE)
    else:
        preset_video = videos.get(preset_size)
    measure_model = bool(args.presets) and preset_size not in videos
    total_runs = 2 * args.repeat * len(videos) + args.repeat * (len(args.presets) + measure_model)
    rows, commands = [], {}
    presets: Optional[dict[str, Any]] = None
    with tempfile.TemporaryDirectory(prefix="benchmark-video-") as tmp, \
            tqdm(total=total_runs, desc="ema_seg runs", unit="run") as bar:
        for size, video in videos.items():
            common = ["--video", str(video), "--json", "--threads", str(args.threads), "--quiet", "--model", str(model)]
            model_runs, e2e_runs = [], []
            commands[size] = {"model_only": [], "end_to_end": []}
            for i in range(args.repeat):
                cmd = [str(binary), *common, "--benchmark"]
                bar.set_postfix_str(f"{size} model only {i + 1}/{args.repeat}")
                model_runs.append(run_cli(cmd, args.threads))
                commands[size]["model_only"].append(shlex.join(cmd))
                bar.update()
                out = Path(tmp) / "out.mp4"
                cmd = [str(binary), *common, "--output", str(out), *extra]
                bar.set_postfix_str(f"{size} end to end {i + 1}/{args.repeat}")
                e2e_runs.append(run_cli(cmd, args.threads))
                commands[size]["end_to_end"].append(shlex.join(cmd))
                out.unlink(missing_ok=True)
                bar.update()
            row = summarize(size, model_runs, e2e_runs)
            row.update(video=str(video), model_only_reports=model_runs, end_to_end_reports=e2e_runs)
            rows.append(row)

        if args.presets:
            common = ["--video", str(preset_video), "--json", "--threads", str(args.threads), "--quiet",
                      "--model", str(model)]
            model_runs, model_cmds = [], []
            runs = {pr: {"reports": [], "bytes": [], "commands": []} for pr in args.presets}
            for i in range(args.repeat):
                if measure_model:
                    cmd = [str(binary), *common, "--benchmark"]
                    bar.set_postfix_str(f"{preset_size} model only {i + 1}/{args.repeat}")
                    model_runs.append(run_cli(cmd, args.threads))
                    model_cmds.append(shlex.join(cmd))
                    bar.update()
                for preset in args.presets:
                    out = Path(tmp) / f"out_{preset}.mp4"
                    cmd = [str(binary), *common, "--output", str(out), *preset_extra,
                           "--preset", preset, "--crf", str(args.crf)]
                    bar.set_postfix_str(f"{preset_size} {preset} {i + 1}/{args.repeat}")
                    runs[preset]["reports"].append(run_cli(cmd, args.threads))
                    runs[preset]["commands"].append(shlex.join(cmd))
                    if not out.is_file():
                        raise BenchmarkError(f"ema_seg wrote no {out}:\n  {shlex.join(cmd)}")
                    runs[preset]["bytes"].append(out.stat().st_size)
                    out.unlink()
                    bar.update()
            if measure_model:
                model_fps = statistics.median(1000.0 / r["model_ms"]["p50"] if r["model_ms"]["p50"] > 0 else 0.0
                                              for r in model_runs)
            else:
                model_fps = next(r["model_only_fps"] for r in rows if r["size"] == preset_size)
            presets = {
                "size": preset_size,
                "crf": args.crf,
                "video": str(preset_video),
                "extra_args": preset_extra,
                "model_only_fps": model_fps,
                "model_only_from": "own runs: size not in --sizes" if measure_model else "main runs",
                "model_only_reports": model_runs,
                "model_only_commands": model_cmds,
                "rows": [],
            }
            for preset, r in runs.items():
                row = summarize_preset(preset, r["reports"], r["bytes"], args.frames, model_fps)
                row.update(commands=r["commands"], reports=r["reports"])
                presets["rows"].append(row)

    text = (tables(rows) + f"\n\n{cpu['name']}, {args.threads} threads, {args.frames} frames per size (H.264, "
            f"{FPS} fps), the median of {args.repeat} runs each; stage ms are the end-to-end runs' p50s: CPU ms "
            "of the decode, overlay and encode threads, wall ms of the model. CPU ms outside the model = "
            "decode + overlay + encode CPU ms (p50s).\n")
    if presets is not None:
        text += (f"\n{preset_table(presets)}\n\nlibx264 presets at {presets['size']}, CRF {presets['crf']}, "
                 f"{args.frames} frames; the median of {args.repeat} end-to-end runs each; MB = 10^6 bytes of the "
                 f"overlay video, Mbit/s = MB * 8 / ({args.frames} / {FPS} s); model only: "
                 f"{presets['model_only_fps']:.1f} fps ({presets['model_only_from']}).\n")
    print("\n" + text)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "cpu": cpu,
        "threads": args.threads,
        "frames": args.frames,
        "repeat": args.repeat,
        "fps": FPS,
        "model": str(model),
        "binary": str(binary),
        "extra_args": extra,
        "env": {"OMP_NUM_THREADS": str(args.threads), "OMP_WAIT_POLICY": "PASSIVE"},
        "command": shlex.join([sys.executable, *sys.argv]),
        "input_encode": f"ffmpeg -y -f rawvideo -pix_fmt bgr24 -s WxH -r {FPS} -i - -c:v libx264 -preset medium "
                        "-crf 20 -pix_fmt yuv420p OUT.mp4 (frames of data/sample/street.mp4, cv2.resize)",
        "targets": TARGETS,
        "commands": commands,
        "rows": rows,
        "presets": presets,
    }
    with atomic_open(out_dir / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    with atomic_open(out_dir / "video.md", "w") as f:
        f.write(text)
    with atomic_path(out_dir / "video.png", suffix=".png") as tmp_png:
        plot(rows, cpu["name"], args.threads, tmp_png)
    print(f"wrote {out_dir / 'results.json'}, {out_dir / 'video.md'}, {out_dir / 'video.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
