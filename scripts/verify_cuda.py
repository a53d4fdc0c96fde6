#!/usr/bin/env python3
"""Every CUDA leg of ema-seg, one line per check (scripts/verify_cuda.sh installs and builds first).

    python scripts/verify_cuda.py --cli build-cuda/ema_seg --work /tmp/emaseg-cuda

Checks: the reference parity on CUDA (our EMANet vs mmsegmentation's own outputs, TF32 off),
the .pt export and its parity gate on CUDA, fp16 labels against float32, a .pt2 compiled for
CUDA, training iterations with --amp fp16 and bf16, two-process DDP (with two GPUs), and the C++
CLI on CUDA (float32, fp16 and .pt2) against the CPU's labels on the sample video, and NVDEC
decoding (--hwaccel cuda, auto) against software decoding. Prints
"PASS name: detail (seconds)", "FAIL name: reason" or "SKIP name: reason"; exits 1 if any failed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
REFERENCE = Path(os.environ.get("EMASEG_REFERENCE_DIR", ROOT.parent / "shared" / "reference"))
DEMO = ROOT / "models" / "emanet_demo.pth"
VIDEO = ROOT / "data" / "sample" / "street.mp4"
SMALL_CONFIG = "emanet_r18w8-d8_128x256_synthetic"


class Skip(Exception):
    pass


def sh(*args: str | Path, timeout: float = 300, env: dict | None = None) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        program = Path(str(args[1] if str(args[0]) == sys.executable else args[0])).name
        raise RuntimeError(f"{program} exited {done.returncode}: {' | '.join(tail)}")
    return done.stdout


def check_device() -> str:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"torch {torch.__version__} sees no CUDA device (a CPU build?)")
    return f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"


def check_reference_parity(work: Path) -> str:
    import torch

    from emaseg import load_model
    from emaseg.inference import SegInference, preprocess

    torch.backends.cuda.matmul.allow_tf32 = False  # float32 as the reference computed it
    torch.backends.cudnn.allow_tf32 = False
    details = []
    for name in ("r18w16", "r50w8"):
        path = REFERENCE / f"mmseg_emanet_{name}.pt"
        if not path.exists():
            raise RuntimeError(f"{path} not found (set EMASEG_REFERENCE_DIR)")
        fx = torch.load(path, weights_only=True)
        torch.save(fx["checkpoint"], work / f"{name}_mmseg.pth")
        sh(sys.executable, ROOT / "scripts" / "convert_mmseg.py", work / f"{name}_mmseg.pth", work / f"{name}.pth")
        model = load_model(work / f"{name}.pth").cuda()
        cfg = model.config
        seg = SegInference(model, num_classes=cfg.model.num_classes, align_corners=cfg.model.align_corners)
        mean, std = torch.tensor(cfg.data.mean).cuda(), torch.tensor(cfg.data.std).cuda()
        with torch.no_grad():
            logits = seg(preprocess(fx["raw_bgr_image"][None].cuda(), mean, std, cfg.data.bgr_to_rgb))[0].cpu()
        diff = (logits - fx["predict_seg_logits"]).abs().max().item()
        agree = (logits.argmax(0) == fx["predict_labels"].long()).float().mean().item()
        if diff > 1e-3 or agree < 0.999:
            raise RuntimeError(f"{name}: max score diff {diff:.2e}, labels {100 * agree:.3f}% equal")
        details.append(f"{name} max diff {diff:.1e}, labels {100 * agree:.2f}%")
    return "; ".join(details)


def export(output: Path, *extra: str) -> str:
    return sh(sys.executable, ROOT / "python" / "export.py", "--checkpoint", DEMO, "--output", output,
              "--device", "cuda", *extra, timeout=600).strip().splitlines()[-1]


def check_export_pt(work: Path) -> str:
    return export(work / "demo_cuda.pt")  # the exporter's own gate ran on CUDA: its parity line


def check_fp16(work: Path) -> str:
    import torch

    from emaseg.export.exporter import load_exported, parity_frames

    export(work / "demo_fp16.pt", "--dtype", "float16")
    f32, _ = load_exported(work / "demo_cuda.pt", "cuda")
    f16, _ = load_exported(work / "demo_fp16.pt", "cuda")
    frames = parity_frames(((2, 256, 512), (1, 333, 500)), seed=3)
    with torch.no_grad():
        agree = [(f32(f.cuda()) == f16(f.cuda())).float().mean().item() for f in frames]
    if min(agree) < 0.99:
        raise RuntimeError(f"fp16 labels only {100 * min(agree):.2f}% equal to float32's")
    return f"labels {100 * min(agree):.2f}% equal to float32 (worst batch)"


def check_pt2(work: Path) -> str:
    return export(work / "demo_cuda.pt2", "--frame-size", "256x512")


def check_training(work: Path) -> str:
    data = work / "synth"
    if not data.exists():
        sh(sys.executable, ROOT / "scripts" / "make_synthetic.py", "--out", data, "--train", "8", "--val", "2",
           "--size", "128x256", "--seed", "11", "--quiet")
    results = []
    for amp in ("fp16", "bf16"):
        sh(sys.executable, ROOT / "python" / "train.py", "--config", SMALL_CONFIG, "--data-root", data,
           "--work-dir", work / f"train_{amp}", "--device", "cuda", "--amp", amp, "--iters", "20",
           "--batch-size", "2", "--val-interval", "10", "--workers", "1")
        if not (work / f"train_{amp}" / "latest.pth").exists():
            raise RuntimeError(f"--amp {amp}: no latest.pth")
        results.append(f"--amp {amp} 20 iterations")
    return ", ".join(results)


def check_ddp(work: Path) -> str:
    import torch

    if torch.cuda.device_count() < 2:
        raise Skip(f"{torch.cuda.device_count()} GPU: DDP needs two")
    sh(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", ROOT / "python" / "train.py",
       "--config", SMALL_CONFIG, "--data-root", work / "synth", "--work-dir", work / "train_ddp",
       "--device", "cuda", "--iters", "10", "--batch-size", "2", "--val-interval", "10", "--workers", "1")
    return "torchrun, 2 processes, 10 iterations"


def masks_agree(a: Path, b: Path) -> float:
    import cv2
    import numpy as np

    names = sorted(p.name for p in a.glob("*.png"))
    if not names or names != sorted(p.name for p in b.glob("*.png")):
        raise RuntimeError(f"mask sets differ: {len(names)} vs {len(list(b.glob('*.png')))}")
    same = [np.mean(cv2.imread(str(a / n), cv2.IMREAD_UNCHANGED) == cv2.imread(str(b / n), cv2.IMREAD_UNCHANGED))
            for n in names]
    return float(min(same))


def check_cli(cli: Path, work: Path) -> str:
    if not cli.exists():
        raise RuntimeError(f"{cli} not built")
    if not VIDEO.exists():
        raise RuntimeError(f"{VIDEO} missing (scripts/setup.sh makes it)")
    common = ["--video", VIDEO, "--max-frames", "20", "--quiet"]
    sh(cli, "--model", work / "demo_cuda.pt", *common, "--device", "cpu", "--mask-dir", work / "m_cpu",
       "--output", work / "cpu.mp4")
    results = []
    for name, extra in (("float32", ["--model", work / "demo_cuda.pt"]),
                        ("fp16", ["--model", work / "demo_cuda.pt", "--fp16"]),
                        (".pt2", ["--model", work / "demo_cuda.pt2"])):
        if name == ".pt2" and not (work / "demo_cuda.pt2").exists():
            results.append(".pt2 not run (its export failed)")
            continue
        masks = work / f"m_{name.strip('.')}"
        sh(cli, *extra, *common, "--device", "cuda", "--mask-dir", masks, "--output", work / f"{name.strip('.')}.mp4")
        agree = masks_agree(work / "m_cpu", masks)
        if agree < (0.99 if name == "fp16" else 0.999):
            raise RuntimeError(f"{name} on CUDA: labels {100 * agree:.2f}% equal to the CPU's")
        results.append(f"{name} {100 * agree:.2f}%")
    return "20 frames, labels vs CPU: " + ", ".join(results)


def check_nvdec(cli: Path, work: Path) -> str:
    """--hwaccel cuda (NVDEC) decodes what software decodes: the labels agree, and auto picks it."""
    if not cli.exists():
        raise RuntimeError(f"{cli} not built")
    clip = work / "street_h264.mp4"  # the sample is MPEG-4 Part 2; NVDEC's first codec is H.264
    sh("ffmpeg", "-v", "error", "-y", "-i", VIDEO, "-frames:v", "20", "-c:v", "libx264", "-pix_fmt", "yuv420p", clip)
    common = ["--model", work / "demo_cuda.pt", "--video", clip, "--device", "cuda", "--quiet", "--json"]
    decoders = {}
    for hwaccel in ("none", "cuda", "auto"):
        out = sh(cli, *common, "--hwaccel", hwaccel, "--mask-dir", work / f"m_hw_{hwaccel}",
                 "--output", work / f"hw_{hwaccel}.mp4")
        decoders[hwaccel] = json.loads(out)["decoder"]
    if "cuda" not in decoders["cuda"] or decoders["auto"] != decoders["cuda"]:
        raise RuntimeError(f"decoders: {decoders}")
    agree = masks_agree(work / "m_hw_none", work / "m_hw_cuda")
    if agree < 0.99:
        raise RuntimeError(f"NVDEC frames give labels {100 * agree:.2f}% equal to software decoding's")
    return f"{decoders['cuda']}; labels {100 * agree:.2f}% equal to software decoding's"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", type=Path, default=ROOT / "build-cuda" / "ema_seg")
    p.add_argument("--work", type=Path, default=Path("/tmp/emaseg-cuda"))
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    checks: list[tuple[str, Callable[[], str]]] = [
        ("cuda device", check_device),
        ("reference parity on CUDA", lambda: check_reference_parity(args.work)),
        (".pt export, parity gate on CUDA", lambda: check_export_pt(args.work)),
        ("fp16 vs float32 on CUDA", lambda: check_fp16(args.work)),
        (".pt2 compiled for CUDA", lambda: check_pt2(args.work)),
        ("training with AMP on CUDA", lambda: check_training(args.work)),
        ("DDP, two processes", lambda: check_ddp(args.work)),
        ("C++ CLI on CUDA", lambda: check_cli(args.cli, args.work)),
        ("NVDEC decoding (--hwaccel cuda)", lambda: check_nvdec(args.cli, args.work)),
    ]
    failed = 0
    for name, check in checks:
        start = time.perf_counter()
        try:
            detail = check()
            print(f"PASS {name}: {detail} ({time.perf_counter() - start:.0f} s)", flush=True)
        except Skip as e:
            print(f"SKIP {name}: {e}", flush=True)
        except Exception as e:  # one line per check; the trace only when asked for
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
            if os.environ.get("EMASEG_VERBOSE"):
                traceback.print_exc()
            if name == "cuda device":
                return 1
    print(f"{len(checks) - failed} of {len(checks)} checks passed or skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
