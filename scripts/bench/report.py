"""Ratios, the Markdown table and the PNG chart of a benchmark result (scripts/benchmark.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from emaseg.atomic import atomic_path

# Display order and labels of the backend rows.
ROW_LABELS = {
    "eager": "PyTorch eager (Python)",
    "eager_cl": "PyTorch eager, channels-last (Python)",
    "torchscript": "TorchScript (Python)",
    "torchscript_frozen": "TorchScript --optimize/frozen (Python)",
    "torchscript_ofi": "TorchScript frozen + optimize_for_inference (Python)",
    "cpp": "C++ runtime, bindings, .pt file",
    "cpp_frozen": "C++ runtime, bindings, --optimize file",
    "cpp_cli": "C++ runtime, ema_seg --benchmark (model)",
    "onnxruntime": "ONNX Runtime (CPU EP)",
    "onnxruntime_int8": "ONNX Runtime, its own static int8 quantisation",
    "torchscript_bf16": "TorchScript bfloat16 (Python)",
    "cpp_bf16": "C++ runtime, bindings, bfloat16 file",
    "cpp_bf16_cl": "C++ runtime, bindings, bfloat16 + channels-last + frozen file (proposed)",
    "cpp_pt2": "C++ runtime, bindings, .pt2 for this frame size",
    "cpp_pt2_bf16": "C++ runtime, bindings, .pt2 bfloat16 for this frame size",
    "cpp_pt2_any": "C++ runtime, bindings, .pt2 for any frame size",
    "cpp_pt2_int8": "C++ runtime, bindings, .pt2 int8 for this frame size",
    "network": "network alone (.pt2, no pre/post-processing)",
    "eager_cuda_fp16": "PyTorch eager fp16 (CUDA)",
    "cpp_cuda_fp16": "C++ runtime fp16 (CUDA)",
}


# Short names for the chart's axis.
CHART_LABELS = {
    "eager": "eager", "eager_cl": "eager\nchannels-last", "torchscript": "TorchScript",
    "torchscript_frozen": "TorchScript\nfrozen", "torchscript_ofi": "TorchScript\nfrozen+ofi",
    "cpp": "C++\nbindings", "cpp_frozen": "C++ bindings\nfrozen file", "cpp_cli": "C++\nema_seg CLI",
    "onnxruntime": "ONNX\nRuntime", "torchscript_bf16": "TorchScript\nbfloat16", "cpp_bf16": "C++ bindings\nbfloat16",
    "cpp_bf16_cl": "C++ bindings\nbf16 ch-last", "cpp_pt2": "C++ bindings\n.pt2",
    "cpp_pt2_bf16": "C++ bindings\n.pt2 bf16", "cpp_pt2_any": "C++ bindings\n.pt2 any size",
    "cpp_pt2_int8": "C++ bindings\n.pt2 int8",
    "network": "network\nonly",
    "eager_cuda_fp16": "eager fp16\nCUDA", "cpp_cuda_fp16": "C++ fp16\nCUDA",
}


def speedup(reference_ms: Optional[float], candidate_ms: Optional[float]) -> Optional[float]:
    """How many times faster `candidate` is than `reference` (>1: candidate faster)."""
    if not reference_ms or not candidate_ms:
        return None
    return reference_ms / candidate_ms


def median_of(rows: dict[str, Any], name: str) -> Optional[float]:
    row = rows.get(name)
    if not row or not row.get("ok"):
        return None
    return row["latency"]["median_ms"]


def add_ratios(rows: dict[str, Any]) -> None:
    """Adds vs_onnxruntime and vs_eager (speed-up factors from median latency) to every row."""
    ort, eager = median_of(rows, "onnxruntime"), median_of(rows, "eager")
    for name, row in rows.items():
        m = median_of(rows, name)
        row["vs_onnxruntime"] = speedup(ort, m)
        row["vs_eager"] = speedup(eager, m)


def _fmt(v: Optional[float], spec: str = ".1f", suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def markdown(result: dict[str, Any]) -> str:
    """The README table(s) of a result."""
    lines: list[str] = []
    m = result.get("machine", {})
    lines.append(f"CPU: {m.get('cpu', '?')}, {result['threads']} thread(s); torch {m.get('torch')}, "
                 f"ONNX Runtime {m.get('onnxruntime')}; matmul {_fmt(m.get('matmul_gflops'))} GFLOP/s "
                 f"float32, {_fmt(m.get('matmul_bf16_gflops'))} bfloat16, {_fmt(m.get('matmul_int8_gops'))} "
                 f"GOP/s int8; 3x3 conv "
                 f"{_fmt(m.get('conv_gflops'))} float32, {_fmt(m.get('conv_bf16_cl_gflops'))} bfloat16 "
                 f"channels-last; OMP_WAIT_POLICY {result.get('omp_wait_policy', '?')}; load average "
                 f"{_fmt((result.get('load_average') or {}).get('start'), '.2f')} at start"
                 + (" (--quick: few runs, not a measurement)" if result.get("quick") else ""))
    lines.append("")
    if result["configs"]:
        lines.append("| config | input | backend | median ms | p95 ms | fps | peak RSS MB | vs ORT | vs eager "
                     "| labels = fp32 | GFLOP/s |")
        lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for cfg in result["configs"]:
            size = f"{cfg['height']}x{cfg['width']}"
            for name, row in cfg["rows"].items():
                label = ROW_LABELS.get(name, name)
                if not row.get("ok"):
                    why = str(row.get("error", "?")).replace("|", "/")
                    lines.append(f"| {cfg['short']} | {size} | {label} | skipped: {why} | | | | | | | |")
                    continue
                lat = row["latency"]
                agree = row.get("label_agreement")
                lines.append(
                    f"| {cfg['short']} | {size} | {label} | {lat['median_ms']:.1f} | {lat['p95_ms']:.1f} | "
                    f"{lat['fps']:.2f} | {_fmt(row.get('peak_rss_mb'), '.0f')} | "
                    f"{_fmt(row.get('vs_onnxruntime'), '.2f', 'x')} | {_fmt(row.get('vs_eager'), '.2f', 'x')} | "
                    f"{_fmt(None if agree is None else 100 * agree, '.2f', '%')} | "
                    f"{_fmt(row.get('achieved_gflops'))} |")
        lines.append("")
        lines.append("| config | GFLOPs/frame | C++ default | C++ vs ORT | C++ vs eager | outside the network "
                     "| video pipeline fps | model-only fps | pipeline / model-only | ONNX exporter |")
        lines.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
        for cfg in result["configs"]:
            v = cfg.get("video") or {}
            lines.append(
                f"| {cfg['short']} | {_fmt(cfg.get('gflops'))} | "
                f"{cfg.get('cpp_row', 'cpp')} | {_fmt(cfg.get('cpp_vs_onnxruntime'), '.2f', 'x')} | "
                f"{_fmt(cfg.get('cpp_vs_eager'), '.2f', 'x')} | "
                f"{_fmt(None if cfg.get('share_outside_network') is None else 100 * cfg['share_outside_network'], '.0f', '%')} | "
                f"{_fmt(v.get('pipeline_fps'), '.2f')} | "
                f"{_fmt(v.get('model_only_fps'), '.2f')} | {_fmt(v.get('ratio'), '.3f')} | "
                f"{(cfg.get('onnx') or {}).get('chosen') or '-'} |")
    ema = result.get("ema_vs_nonlocal")
    if ema and ema.get("rows"):
        lines.append("")
        lines.append("| block | feature map | GFLOPs | peak memory MB (measured / formula) | median ms |")
        lines.append("|---|---|---:|---:|---:|")
        for r in ema["rows"]:
            if not r.get("ok"):
                lines.append(f"| {r.get('block')} | {r.get('map')} | skipped: {r.get('error', '?')} | | |")
                continue
            lines.append(f"| {r['block']} | {r['height']}x{r['width']} (C={r['channels']}) | {r['gflops']:.2f} | "
                         f"{_fmt(r.get('peak_mem_mb'), '.0f')} / {r['peak_mem_formula_mb']:.0f} | "
                         f"{r['latency']['median_ms']:.1f} |")
    return "\n".join(lines)


def chart(result: dict[str, Any], path: str | Path) -> Path:
    """Bar chart: fps per backend, one panel per config, bars annotated with the speed-up vs
    ONNX Runtime and vs eager."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = result["configs"]
    fig, axes = plt.subplots(len(configs), 1, figsize=(11, 3.6 * len(configs)), squeeze=False)
    for ax, cfg in zip(axes[:, 0], configs):
        rows = [(n, r) for n, r in cfg["rows"].items() if r.get("ok")]
        names = [CHART_LABELS.get(n, n) for n, _ in rows]
        fps = [r["latency"]["fps"] for _, r in rows]
        colours = ["tab:orange" if n.startswith("cpp") else "tab:green" if n == "onnxruntime"
                   else "tab:blue" for n, _ in rows]
        bars = ax.bar(range(len(rows)), fps, color=colours)
        for bar, (_, r) in zip(bars, rows):
            note = []
            if r.get("vs_onnxruntime") is not None:
                note.append(f"{r['vs_onnxruntime']:.2f}x ORT")
            if r.get("vs_eager") is not None:
                note.append(f"{r['vs_eager']:.2f}x eager")
            ax.annotate("\n".join(note), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, fontsize=8)
        ax.set_ylabel("fps (1000 / median ms)")
        ax.set_ylim(0, max(fps + [1e-9]) * 1.3)
        ax.set_title(f"{cfg['config']} at {cfg['height']}x{cfg['width']}, {result['threads']} thread(s)"
                     + (" [--quick]" if result.get("quick") else ""), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:  # savefig picks the format by extension
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path
