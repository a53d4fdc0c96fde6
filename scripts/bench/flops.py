"""FLOPs, a reference non-local block, the EMA-vs-self-attention probe, machine matmul GFLOP/s.

FLOPs are torch.utils.flop_counter.FlopCounterMode counts: 2 per multiply-add of convolutions,
matmuls, einsums and linear layers; element-wise work (BN, ReLU, softmax, normalisation,
interpolation, argmax) is not counted, as is customary for "GFLOPs" of a network. The model is
counted on the meta device, so counting an R-50 at 512x1024 takes no compute.
"""
from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from emaseg.models import EMAModule


def count_flops(fn, *args) -> tuple[int, dict[str, int]]:
    """(total FLOPs, FLOPs per aten op) of `fn(*args)`."""
    mode = FlopCounterMode(display=False)
    with mode, torch.inference_mode():
        fn(*args)
    per_op: dict[str, int] = {}
    for ops in mode.get_flop_counts().values():  # per module scope; "Global" holds every op
        for op, n in ops.items():
            per_op[str(op)] = max(per_op.get(str(op), 0), int(n))
    return int(mode.get_total_flops()), per_op


def model_flops(config_name: str, height: int, width: int) -> dict[str, Any]:
    """FLOPs of one frame through the exported module of `config_name` (network at the frame's
    size: resize "none"), counted on the meta device."""
    from emaseg.config import get_config
    from emaseg.export import ResizePolicy, SegmentationModule
    from emaseg.models import build_model

    cfg = get_config(config_name)
    with torch.device("meta"):
        net = build_model(cfg).eval()
        module = SegmentationModule(net, cfg, ResizePolicy("none")).eval()
        frame = torch.empty(1, height, width, 3, dtype=torch.uint8)
    total, per_op = count_flops(module, frame)
    return {"gflops": total / 1e9, "per_op_gflops": {k: v / 1e9 for k, v in sorted(per_op.items())},
            "method": "FlopCounterMode on the meta device, 2 FLOPs per multiply-add, matmul/conv only"}


class NonLocalBlock(nn.Module):
    """The standard embedded-Gaussian non-local block (Wang et al., 2018), minimal form:
    theta, phi, g are 1x1 convs C -> C/2; attention = softmax over the N = H*W keys of
    theta^T phi; y = attention @ g; out = x + W(y) with W a 1x1 conv C/2 -> C."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = channels // 2
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.out = nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.theta(x).flatten(2).transpose(1, 2)       # (B, N, C/2)
        k = self.phi(x).flatten(2)                         # (B, C/2, N)
        v = self.g(x).flatten(2).transpose(1, 2)           # (B, N, C/2)
        attn = torch.bmm(q, k).softmax(dim=-1)             # (B, N, N): the quadratic part
        y = torch.bmm(attn, v).transpose(1, 2).reshape(b, c // 2, h, w)
        return x + self.out(y)


class EMAUnit(nn.Module):
    """The EMA unit as EMAHead runs it, without the 3x3 convs around it: 1x1 conv, EM
    iterations (EMAModule), 1x1 conv, residual. The like-for-like counterpart of NonLocalBlock."""

    def __init__(self, channels: int, num_bases: int, num_stages: int) -> None:
        super().__init__()
        self.mid = nn.Conv2d(channels, channels, 1)
        self.ema = EMAModule(channels=channels, num_bases=num_bases, num_stages=num_stages, momentum=0.1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.out(F.relu(self.ema(self.mid(x)))))


def analytic_flops(block: str, channels: int, n: int, num_bases: int = 64, num_stages: int = 3) -> int:
    """Multiply-add FLOPs (x2) by formula; N = H*W, C channels, K bases, T stages.

    ema:        T E-steps (N C K) + T M-steps (N C K) + reconstruction (N C K) -> 2 (2T+1) N C K
    ema_unit:   ema + two 1x1 convs C -> C                                     -> + 4 N C^2
    non_local:  theta, phi, g (3 N C C/2) + out (N C/2 C) + QK^T and AV (2 N^2 C/2) -> 4 N C^2 + 2 N^2 C
    """
    c, k, t = channels, num_bases, num_stages
    ema = 2 * (2 * t + 1) * n * c * k
    if block == "ema":
        return ema
    if block == "ema_unit":
        return ema + 4 * n * c * c
    if block == "non_local":
        return 4 * n * c * c + 2 * n * n * c
    raise ValueError(f"unknown block {block!r}")


def analytic_peak_bytes(block: str, channels: int, n: int, num_bases: int = 64, itemsize: int = 4) -> int:
    """Intermediates of one forward (float32), by formula, inputs and weights excluded:
    ema        responsibilities and their L1-normalised copy (2 N K) + reconstruction and
               normalised features (2 N C)
    ema_unit   ema + the two 1x1 conv outputs, ReLU and residual sum (4 N C)
    non_local  the N x N scores and their softmax (2 N^2) + theta, phi, g, y (2 N C) + output
               conv and residual sum (2 N C)
    """
    c, k = channels, num_bases
    if block == "ema":
        elems = 2 * n * k + 2 * n * c
    elif block == "ema_unit":
        elems = 2 * n * k + 6 * n * c
    elif block == "non_local":
        elems = 2 * n * n + 4 * n * c
    else:
        raise ValueError(f"unknown block {block!r}")
    return elems * itemsize


def build_block(block: str, channels: int, num_bases: int, num_stages: int) -> nn.Module:
    if block == "ema":
        return EMAModule(channels=channels, num_bases=num_bases, num_stages=num_stages, momentum=0.1).eval()
    if block == "ema_unit":
        return EMAUnit(channels, num_bases, num_stages).eval()
    if block == "non_local":
        return NonLocalBlock(channels).eval()
    raise ValueError(f"unknown block {block!r}")


def probe_block(block: str, channels: int, height: int, width: int, *, num_bases: int = 64,
                num_stages: int = 3, runs: int = 3) -> dict[str, Any]:
    """One block on a (1, C, H, W) feature map, meant for a fresh process: peak memory of the
    first forward (VmHWM after minus VmRSS before), then the median of `runs` timed forwards,
    then FLOPs (FlopCounterMode and formula)."""
    from .timing import current_rss_mb, peak_rss_mb, summarize

    torch.manual_seed(0)
    module = build_block(block, channels, num_bases, num_stages)
    x = torch.randn(1, channels, height, width)
    n = height * width
    with torch.inference_mode():
        rss0 = current_rss_mb()
        t0 = time.perf_counter()
        module(x)
        first_ms = (time.perf_counter() - t0) * 1000
        peak = peak_rss_mb()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            module(x)
            times.append((time.perf_counter() - t0) * 1000)
    counted, _ = count_flops(module, x)
    return {
        "block": block, "channels": channels, "height": height, "width": width, "n": n,
        "num_bases": num_bases if block != "non_local" else None,
        "num_stages": num_stages if block != "non_local" else None,
        "gflops": counted / 1e9,
        "gflops_formula": analytic_flops(block, channels, n, num_bases, num_stages) / 1e9,
        "peak_mem_mb": (peak - rss0) if rss0 is not None else None,
        "peak_mem_formula_mb": analytic_peak_bytes(block, channels, n, num_bases) / 2**20,
        "first_ms": first_ms,
        "latency": summarize(times).to_dict(),
    }


def matmul_gflops(n: int = 2048, dtype: str = "float32", seconds: float = 1.0) -> dict[str, Any]:
    """Dense torch.mm of two n x n matrices in the current thread setting: GFLOP/s (2 n^3 per
    product) of the best of repeated timings over about `seconds`."""
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)
    if dtype == "int8":  # int8 x int8 -> int32 (oneDNN, VNNI dot products): the int8 roof, in GOP/s
        a = torch.randint(-128, 128, (n, n), generator=g, dtype=torch.int8)
        b = torch.randint(-128, 128, (n, n), generator=g, dtype=torch.int8)
        out = torch.empty(n, n, dtype=torch.int32)

        def product() -> None:
            torch._int_mm(a, b, out=out)
    else:
        a = torch.randn(n, n, generator=g).to(dt)
        b = torch.randn(n, n, generator=g).to(dt)
        out = torch.empty(n, n, dtype=dt)

        def product() -> None:
            torch.mm(a, b, out=out)
    product()  # warm-up: thread pool, packing buffers
    best, rates, start = float("inf"), [], time.perf_counter()
    while True:
        t0 = time.perf_counter()
        product()
        dt_s = time.perf_counter() - t0
        best = min(best, dt_s)
        rates.append(2 * n**3 / dt_s / 1e9)
        if time.perf_counter() - start >= seconds and len(rates) >= 3:
            break
    rates.sort()
    return {"n": n, "dtype": dtype, "threads": torch.get_num_threads(), "runs": len(rates),
            "gflops_best": 2 * n**3 / best / 1e9, "gflops_median": rates[len(rates) // 2]}


def conv_gflops(dtype: str = "float32", channels_last: bool = False, channels: int = 512, size: int = 64,
                seconds: float = 1.0) -> dict[str, Any]:
    """A 3x3 convolution C -> C on a size x size map (oneDNN, the kernels the network's convs
    use), best-of GFLOP/s: the practical compute roof for the model's dominant op."""
    dt = getattr(torch, dtype)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, size, size, generator=g).to(dt).contiguous(memory_format=fmt)
    w = torch.randn(channels, channels, 3, 3, generator=g).to(dt).contiguous(memory_format=fmt)
    flops = 2 * channels * channels * 9 * size * size
    best, runs, start = float("inf"), 0, time.perf_counter()
    with torch.inference_mode():
        torch.conv2d(x, w, padding=1)
        while True:
            t0 = time.perf_counter()
            torch.conv2d(x, w, padding=1)
            best = min(best, time.perf_counter() - t0)
            runs += 1
            if time.perf_counter() - start >= seconds and runs >= 3:
                break
    return {"op": f"conv3x3 {channels}->{channels} on {size}x{size}", "dtype": dtype,
            "channels_last": channels_last, "threads": torch.get_num_threads(), "runs": runs,
            "gflops_best": flops / best / 1e9}
