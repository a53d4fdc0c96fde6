#!/usr/bin/env python3
"""Time one training step on the CPU, per variant, side by side in one run.

    python scripts/benchmark_train_step.py [--config emanet_r18w16-d8_256x512_synthetic]
        [--batch-size 8] [--threads 2] [--steps 12] [--variants fp32,bf16,bf16_cl,bf16_compile]
        [--out docs/benchmarks/train_step]

Each variant is `TrainStep` (the training loop's own step: normalise, forward, CE + aux CE,
backward, SGD) on a fixed random batch, after warm-up steps; the p50 of --steps steps is
reported with its speed-up over float32. Variants: fp32, fp32_cl (channels-last), bf16 (CPU
autocast), bf16_cl, bf16_compile (torch.compile of the model, bf16). The CPU is shared: compare
these numbers with each other only. Writes train_step.json and train_step.md to --out.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

VARIANTS = {  # name -> (amp, channels_last, compile)
    "fp32": (None, False, False), "fp32_cl": (None, True, False), "bf16": ("bf16", False, False),
    "bf16_cl": ("bf16", True, False), "bf16_compile": ("bf16", False, True),
}


def time_variant(name: str, cfg, batch_size: int, steps: int, warmup: int) -> list[float]:
    import torch

    import emaseg
    from emaseg.training.loop import TrainStep

    amp, channels_last, compiled = VARIANTS[name]
    torch.manual_seed(0)
    model = emaseg.build_model(cfg).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    step = TrainStep(torch.compile(model) if compiled else model, optimizer, cfg, torch.device("cpu"),
                     amp=amp, channels_last=channels_last)
    h, w = cfg.data.crop_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, h, w, 3), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, cfg.model.num_classes, (batch_size, h, w), dtype=torch.uint8, generator=generator)
    times = []
    for i in range(warmup + steps):
        tick = time.perf_counter()
        step(i, images, labels)
        if i >= warmup:
            times.append(time.perf_counter() - tick)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="emanet_r18w16-d8_256x512_synthetic")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "train_step")
    args = p.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or args.batch_size <= 0 or args.steps <= 0 or args.threads <= 0:
        p.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}" if unknown else
                "--batch-size, --steps and --threads must be positive")

    import torch
    from tqdm import tqdm

    from emaseg.atomic import write_atomic
    from emaseg.config import get_config

    torch.set_num_threads(args.threads)
    cfg = get_config(args.config)
    results = {}
    for name in tqdm(names, desc="variants"):
        times = time_variant(name, cfg, args.batch_size, args.steps, args.warmup)
        results[name] = {"p50_s": statistics.median(times), "min_s": min(times)}
    base = results.get("fp32", next(iter(results.values())))["p50_s"]
    lines = [f"Training step, {cfg.name}, batch {args.batch_size} at {cfg.data.crop_size[0]}x{cfg.data.crop_size[1]}, "
             f"{args.threads} threads, p50 of {args.steps} steps", "",
             "| variant | s / step | steps / s | vs fp32 |", "|---|---|---|---|"]
    for name, r in results.items():
        r["speedup_vs_fp32"] = base / r["p50_s"]
        lines.append(f"| {name} | {r['p50_s']:.3f} | {1 / r['p50_s']:.2f} | {r['speedup_vs_fp32']:.2f}x |")
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "train_step.json", json.dumps({"config": cfg.name, "batch_size": args.batch_size,
                                                           "threads": args.threads, "torch": torch.__version__,
                                                           "results": results}, indent=2))
    write_atomic(args.out / "train_step.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
