"""Latency statistics, peak resident memory and thread settings. Imports no torch."""
from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence


@dataclass
class LatencyStats:
    """Per-call wall-clock latencies (milliseconds) of the timed runs, warm-up excluded."""
    count: int
    median_ms: float
    p95_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    fps: float          # 1000 / median: one stream, one frame at a time

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(latencies_ms: Sequence[float]) -> LatencyStats:
    med = percentile(latencies_ms, 50)
    return LatencyStats(count=len(latencies_ms), median_ms=med, p95_ms=percentile(latencies_ms, 95),
                        mean_ms=sum(latencies_ms) / len(latencies_ms), min_ms=min(latencies_ms),
                        max_ms=max(latencies_ms), fps=1000.0 / med if med > 0 else float("inf"))


def time_calls(fn: Callable[[Any], Any], inputs: Sequence[Any], *, warmup: int, iters: int,
               max_seconds: float = float("inf"), min_iters: int = 3) -> tuple[list[float], list[float]]:
    """Calls `fn` on `inputs` in turn: `warmup` untimed calls, then up to `iters` timed ones,
    stopping early once `max_seconds` of timed calls have passed and at least `min_iters` ran.

    Returns (warm-up latencies, timed latencies), both in milliseconds; the first warm-up call
    shows the one-off cost (lazy initialisation, TorchScript profiling runs).
    """
    if not inputs:
        raise ValueError("no inputs to time")
    warm: list[float] = []
    for i in range(warmup):
        t0 = time.perf_counter()
        fn(inputs[i % len(inputs)])
        warm.append((time.perf_counter() - t0) * 1000.0)
    timed: list[float] = []
    spent = 0.0
    for i in range(iters):
        t0 = time.perf_counter()
        fn(inputs[i % len(inputs)])
        dt = time.perf_counter() - t0
        timed.append(dt * 1000.0)
        spent += dt
        if spent >= max_seconds and len(timed) >= min_iters:
            break
    return warm, timed


def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_mb() -> float | None:
    """Resident set size now (VmRSS), MiB; None where /proc is missing."""
    kb = _status_kb("VmRSS")
    return kb / 1024.0 if kb is not None else None


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB: VmHWM, else ru_maxrss (KiB on Linux)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return kb / 1024.0


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a child process limited to `threads` compute threads (OpenMP, MKL,
    OpenBLAS), so that library pools sized before our own call see the same number."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env
