#!/usr/bin/env python3
"""Several streams in one ema_seg process: aggregate throughput, and memory over a long live run.

    python scripts/benchmark_streams.py [--streams 4] [--size 1280x720] [--frames 120] [--repeat 3]
        [--threads 2] [--model models/emanet_demo.pt2] [--live-minutes 10] [--binary build/ema_seg]
        [--out-dir docs/benchmarks/streams]

Reproduce the published run (docs/benchmarks/streams/) with the defaults.

Throughput: one camera-like H.264 file of --frames frames at --size (the video benchmark's, made
once by apt's ffmpeg from data/sample/street.mp4 and cached in build/benchmark-video/). Then,
--repeat times, alternating:

  one stream:    ema_seg --video V --output TMP/one.mp4 --json --threads T --quiet --model M
  N streams:     ema_seg --video V (N times) --output-dir TMP --json --threads T --quiet --model M
  N processes:   N of the one-stream command at once, as one process per camera does today

each writing its overlay videos; fps = frames / wall seconds from --json (for N streams: every
stream's frames together; for N processes: every frame over the wall time from the first start to
the last exit) and peak RSS (--json peak_rss_mb; summed over the N processes). The ratio N streams
/ one stream (median of the per-repeat ratios) is the target: one process serving N cameras as
fast as one camera alone, at least 0.9.

Memory (--live-minutes > 0; 0 skips it): N live streams, each the same file served endlessly at its
frame rate by its own `ffmpeg -re -stream_loop -1 ... -f mpegts -listen 1 http://127.0.0.1:PORT/`,
run through one `ema_seg --video URL ... --output-dir TMP --threads T` for --live-minutes; its
resident memory (VmRSS) is sampled every 2 s. Reported: RSS at 1 minute and at the end, their
ratio (target: within 10%), the highest RSS after the first minute, and every stream's frames,
dropped frames and reconnects from the final --json report (the run is ended with SIGINT).

All in one run on one machine: compare these numbers with each other only. Writes results.json,
streams.md and streams.png (throughput bars and the RSS curve) to --out-dir and prints the tables.
"""
from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "scripts"))
import benchmark_video as video  # noqa: E402  (its input files, CPU line and runner)
from emaseg.cli import int_at_least  # noqa: E402

MIN_RATIO = 0.9
MAX_RSS_GROWTH = 0.10
SAMPLE_SECONDS = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def throughput(args: argparse.Namespace, clip: Path, tmp: Path) -> dict[str, Any]:
    from tqdm import tqdm

    base = [str(args.binary), "--json", "--threads", str(args.threads), "--quiet", "--model", str(args.model)]
    one_cmd = base + ["--video", str(clip), "--output", str(tmp / "one.mp4")]
    many_cmd = base + [a for _ in range(args.streams) for a in ("--video", str(clip))] + ["--output-dir", str(tmp / "many")]
    one, many, procs, ratios = [], [], [], []
    rss: dict[str, list[float]] = {"one": [], "many": [], "procs": []}
    for _ in tqdm(range(args.repeat), desc="throughput", unit="round"):
        r1 = video.run_cli(one_cmd, args.threads)
        rn = video.run_cli(many_cmd, args.threads)
        if any(s["state"] != "ended" for s in rn["streams"]):
            raise video.BenchmarkError(f"a stream did not end normally: {rn['streams']}")
        started = time.monotonic()
        children = [subprocess.Popen(one_cmd[:-1] + [str(tmp / f"proc{k}.mp4")], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT, env=video.child_env(args.threads))
                    for k in range(args.streams)]
        reports = []
        for child in children:
            out, err = child.communicate()
            if child.returncode != 0:
                raise video.BenchmarkError(f"ema_seg failed (exit {child.returncode}): {err}")
            reports.append(json.loads(out))
        wall = time.monotonic() - started
        one.append(r1["frames"] / r1["seconds"])
        many.append(rn["frames"] / rn["seconds"])
        procs.append(sum(r["frames"] for r in reports) / wall)
        ratios.append(many[-1] / one[-1])
        rss["one"].append(r1["peak_rss_mb"])
        rss["many"].append(rn["peak_rss_mb"])
        rss["procs"].append(sum(r["peak_rss_mb"] for r in reports))
    return {"one_fps": one, "many_fps": many, "procs_fps": procs, "ratios": ratios, "ratio": statistics.median(ratios),
            "peak_rss_mb": {k: statistics.median(v) for k, v in rss.items()},
            "commands": {"one": one_cmd, "many": many_cmd}}


def live_memory(args: argparse.Namespace, clip: Path, tmp: Path) -> dict[str, Any]:
    from tqdm import tqdm

    ts = tmp / "live.ts"
    subprocess.run([video.ffmpeg_binary(), "-v", "error", "-y", "-i", str(clip), "-c", "copy", "-f", "mpegts", str(ts)],
                   check=True)
    servers, urls = [], []
    for _ in range(args.streams):
        url = f"http://127.0.0.1:{free_port()}/live.ts"
        servers.append(subprocess.Popen([video.ffmpeg_binary(), "-v", "error", "-re", "-stream_loop", "-1", "-i",
                                         str(ts), "-c", "copy", "-f", "mpegts", "-listen", "1", url],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        urls.append(url)
    time.sleep(1.0)  # the servers listen
    cmd = [str(args.binary), "--json", "--threads", str(args.threads), "--quiet", "--model", str(args.model),
           "--output-dir", str(tmp / "live")] + [a for url in urls for a in ("--video", url)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=video.child_env(args.threads), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    samples: list[tuple[float, float]] = []
    start = time.monotonic()
    total = args.live_minutes * 60
    try:
        with tqdm(total=int(total), desc=f"{args.streams} live streams", unit="s") as bar:
            while (elapsed := time.monotonic() - start) < total:
                if proc.poll() is not None:
                    raise video.BenchmarkError(f"ema_seg ended early (exit {proc.returncode}): {proc.stderr.read()}")
                if (mb := rss_mb(proc.pid)) is not None:
                    samples.append((elapsed, mb))
                time.sleep(SAMPLE_SECONDS)
                bar.n = int(min(elapsed, total))
                bar.refresh()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        for server in servers:
            server.kill()
            server.wait()
    if proc.returncode != 130:
        raise video.BenchmarkError(f"ema_seg exited {proc.returncode} after SIGINT: {err}")
    report = json.loads(out)
    settled = min(60.0, total / 2)  # the first minute (half of a shorter run) fills caches and buffers
    at_minute = next(mb for t, mb in samples if t >= settled)
    end = samples[-1][1]
    after = [mb for t, mb in samples if t >= settled] or [end]
    return {"command": cmd, "samples": samples, "rss_1min_mb": at_minute, "rss_end_mb": end,
            "growth": end / at_minute - 1, "max_after_1min_mb": max(after), "minutes": args.live_minutes,
            "streams": [{k: s[k] for k in ("name", "state", "frames", "dropped", "reconnects", "fps")}
                        for s in report["streams"]], "peak_rss_mb": report.get("peak_rss_mb")}


def tables(result: dict[str, Any]) -> str:
    t, n = result["throughput"], result["streams"]
    lines = [f"{result['cpu_line']}; {result['threads']} threads; model {result['model']}; {result['date']}", "",
             f"| {result['size']} H.264, {result['frames']} frames | fps (median) | runs |", "|---|---|---|",
             f"| one stream alone | {statistics.median(t['one_fps']):.1f} | {', '.join(f'{v:.1f}' for v in t['one_fps'])} |",
             f"| {n} streams in one process (all frames) | {statistics.median(t['many_fps']):.1f} | "
             f"{', '.join(f'{v:.1f}' for v in t['many_fps'])} |",
             f"| {n} processes at once, one stream each (all frames) | {statistics.median(t['procs_fps']):.1f} | "
             f"{', '.join(f'{v:.1f}' for v in t['procs_fps'])} |",
             f"| **ratio** {n} streams / one stream (target >= {MIN_RATIO}) | **{t['ratio']:.2f}** | "
             f"{', '.join(f'{v:.2f}' for v in t['ratios'])} |", "",
             f"Peak RSS (median): one stream {t['peak_rss_mb']['one']:.0f} MB, {n} streams in one process "
             f"{t['peak_rss_mb']['many']:.0f} MB, {n} processes {t['peak_rss_mb']['procs']:.0f} MB in all."]
    if (m := result.get("memory")):
        lines += ["", f"{n} live streams ({result['size']}, served at their frame rate by ffmpeg), "
                      f"{m['minutes']:g} minutes:", "",
                  "| RSS at 1 min | RSS at the end | growth (target within 10%) | highest after 1 min |", "|---|---|---|---|",
                  f"| {m['rss_1min_mb']:.1f} MB | {m['rss_end_mb']:.1f} MB | **{100 * m['growth']:+.1f}%** | "
                  f"{m['max_after_1min_mb']:.1f} MB |", "",
                  "| stream | state | frames | dropped | reconnects | fps |", "|---|---|---|---|---|---|"]
        lines += [f"| {s['name']} | {s['state']} | {s['frames']} | {s['dropped']} | {s['reconnects']} | {s['fps']:.1f} |"
                  for s in m["streams"]]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memory = result.get("memory")
    fig, axes = plt.subplots(1, 2 if memory else 1, figsize=(11 if memory else 5.5, 4), squeeze=False)
    t = result["throughput"]
    ax = axes[0][0]
    labels = ["one stream", f"{result['streams']} streams,\none process", f"{result['streams']} processes"]
    values = [statistics.median(t["one_fps"]), statistics.median(t["many_fps"]), statistics.median(t["procs_fps"])]
    ax.bar(labels, values, color=["#59a", "#2a7", "#c55"])
    for x, v in enumerate(values):
        ax.text(x, v, f"{v:.1f}", ha="center", va="bottom")
    ax.set_ylabel("frames per second (all streams)")
    ax.set_title(f"{result['size']} H.264 with overlay videos: ratio {t['ratio']:.2f}")
    if memory:
        ax = axes[0][1]
        ax.plot([s[0] / 60 for s in memory["samples"]], [s[1] for s in memory["samples"]], color="#c55")
        ax.axvline(1, color="#999", linestyle="--", linewidth=1)
        ax.set_xlabel("minutes")
        ax.set_ylabel("resident memory (MB)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"{result['streams']} live streams: {100 * memory['growth']:+.1f}% from 1 min to the end")
    fig.suptitle(result["cpu_line"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int_at_least(2), default=4)
    parser.add_argument("--size", type=video.parse_wxh, default=(1280, 720), help="WxH (default 1280x720)")
    parser.add_argument("--frames", type=int_at_least(10), default=120)
    parser.add_argument("--repeat", type=int_at_least(1), default=3)
    parser.add_argument("--threads", type=int_at_least(1), default=2)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "emanet_demo.pt2")
    parser.add_argument("--live-minutes", type=float, default=10.0, help="0 skips the memory run")
    parser.add_argument("--binary", type=Path, default=ROOT / "build" / "ema_seg")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "benchmarks" / "streams")
    args = parser.parse_args()
    try:
        for path, what in ((args.binary, "ema_seg (bash scripts/setup.sh builds it)"), (args.model, "the model")):
            if not path.is_file():
                raise video.BenchmarkError(f"{path} is missing: {what}")
        cpu = video.cpu_info()
        clip = video.h264_video(args.size, args.frames, video.CACHE)
        with tempfile.TemporaryDirectory() as tmp:
            result: dict[str, Any] = {
                "cpu": cpu, "cpu_line": video.cpu_line(cpu), "threads": args.threads, "streams": args.streams,
                "size": f"{args.size[0]}x{args.size[1]}", "frames": args.frames,
                "model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": video.git_commit(),
                "throughput": throughput(args, clip, Path(tmp)),
            }
            if args.live_minutes > 0:
                result["memory"] = live_memory(args, clip, Path(tmp))
    except video.BenchmarkError as e:
        print(f"benchmark_streams: error: {e}", file=sys.stderr)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    text = tables(result)
    (args.out_dir / "streams.md").write_text(text)
    plot(result, args.out_dir / "streams.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
