"""scripts/benchmark.py: one --quick run on the tiny config, its JSON, table and chart.

A smoke test of the tooling, not a measurement: it asserts keys, types and that every speed-up
is a positive number, never a timing. One thread per backend, so it does not fight parallel tests.
The C++ rows are allowed to be skipped (with their reason recorded) where the CLI or the
bindings are not built.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))  # bench/, the benchmark's own package

CONFIG = "emanet_r18w8-d8_128x256_synthetic"
SCRIPT = ROOT / "scripts" / "benchmark.py"


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, str(SCRIPT), "--config", CONFIG, "--size", "64x128", "--quick", "--json",
           "--threads", "1", "--out", str(out), "--iters", "3",
           # The rows this test checks; the bfloat16 and int8 packages have their own tests
           # (test_aoti, test_int8_onnx), and each compile costs CI time.
           "--backends", "eager,torchscript,torchscript_frozen,torchscript_ofi,cpp,cpp_bf16,cpp_pt2,onnxruntime,"
                         "cpp_cli"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), out, proc


def test_json_keys_and_ratios(run):
    result, _, _ = run
    for key in ("quick", "threads", "machine", "configs", "cpp_vs_onnxruntime", "cpp_vs_eager", "targets",
                "ema_vs_nonlocal"):
        assert key in result
    assert result["quick"] is True and result["threads"] == 1
    (cfg,) = result["configs"]
    assert cfg["config"] == CONFIG and (cfg["height"], cfg["width"]) == (64, 128)
    for key in ("cpp_vs_onnxruntime", "cpp_vs_eager", "gflops", "rows", "onnx", "exports"):
        assert key in cfg
    assert _positive(cfg["gflops"])
    rows = cfg["rows"]
    for name in ("eager", "torchscript", "torchscript_frozen", "torchscript_ofi", "onnxruntime"):
        row = rows[name]
        assert row["ok"], row
        lat = row["latency"]
        assert lat["count"] >= 1 and _positive(lat["median_ms"]) and _positive(lat["p95_ms"]) and _positive(lat["fps"])
        assert _positive(row["peak_rss_mb"])
        assert _positive(row["vs_onnxruntime"]) and _positive(row["vs_eager"])
        assert row["label_agreement"] == 1.0, name  # float32 paths give eager's labels
    assert cfg["onnx"]["chosen"] in ("dynamo", "legacy")
    # The C++ rows: measured, or skipped with a reason (bindings / CLI not built).
    if rows["cpp"]["ok"]:
        assert _positive(cfg["cpp_vs_onnxruntime"]) and _positive(cfg["cpp_vs_eager"])
        assert result["cpp_vs_onnxruntime"][CONFIG] == cfg["cpp_vs_onnxruntime"]
        assert result["cpp_vs_eager"][CONFIG] == cfg["cpp_vs_eager"]
        assert rows["cpp"]["label_agreement"] == 1.0
        assert 0.5 < rows["cpp_bf16"]["label_agreement"] <= 1.0
        # The default path is the .pt2 compiled for the frame size, with eager's labels.
        assert cfg["cpp_row"] == "cpp_pt2" and rows["cpp_pt2"]["label_agreement"] == 1.0
        assert cfg["network_ms"] is None and cfg["share_outside_network"] is None  # no network row asked for
    else:
        assert rows["cpp"]["error"] and cfg["cpp_vs_onnxruntime"] is None
    if rows["cpp_cli"]["ok"]:
        assert _positive(rows["cpp_cli"]["latency"]["median_ms"]) and _positive(rows["cpp_cli"]["pipeline_fps"])
        if rows["cpp"]["ok"]:
            assert _positive(cfg["video"]["ratio"])
    for name, row in rows.items():  # a skipped row always says why
        assert row["ok"] or row.get("error"), name


def test_machine_and_ema_sections(run):
    result, _, _ = run
    m = result["machine"]
    assert _positive(m["matmul_gflops"]) and _positive(m["cores"])
    ema = result["ema_vs_nonlocal"]
    blocks = {r["block"]: r for r in ema["rows"]}
    assert set(blocks) == {"ema", "ema_unit", "non_local"}
    for r in blocks.values():
        assert r["ok"], r
        assert r["gflops"] == pytest.approx(r["gflops_formula"], rel=1e-6)  # counter == closed form
        assert _positive(r["latency"]["median_ms"])
    assert blocks["non_local"]["gflops"] > blocks["ema_unit"]["gflops"] > blocks["ema"]["gflops"]


def test_outputs_written(run):
    result, out, proc = run
    saved = json.loads((out / "benchmark.json").read_text())
    assert saved["cpp_vs_eager"] == result["cpp_vs_eager"]
    png = (out / "benchmark.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "benchmark.md").read_text()
    assert md.count("\n|") > 5 and "ONNX Runtime" in md


def test_flops_formulas_match_counter():
    from bench.flops import analytic_flops, build_block, count_flops

    for block in ("ema", "ema_unit", "non_local"):
        x = torch.randn(1, 16, 5, 7)
        counted, _ = count_flops(build_block(block, 16, 4, 2), x)
        assert counted == analytic_flops(block, 16, 35, num_bases=4, num_stages=2), block


def test_stats_and_ratios():
    from bench.report import add_ratios
    from bench.timing import percentile, summarize

    assert percentile([1, 2, 3, 4], 50) == pytest.approx(np.percentile([1, 2, 3, 4], 50))
    assert percentile([5, 1, 9, 3, 7], 95) == pytest.approx(np.percentile([5, 1, 9, 3, 7], 95))
    s = summarize([10.0, 20.0, 30.0])
    assert s.median_ms == 20.0 and s.fps == pytest.approx(50.0)
    rows = {"eager": {"ok": True, "latency": {"median_ms": 30.0}},
            "onnxruntime": {"ok": True, "latency": {"median_ms": 20.0}},
            "cpp": {"ok": True, "latency": {"median_ms": 10.0}},
            "gone": {"ok": False, "error": "not built"}}
    add_ratios(rows)
    assert rows["cpp"]["vs_onnxruntime"] == pytest.approx(2.0) and rows["cpp"]["vs_eager"] == pytest.approx(3.0)
    assert rows["gone"]["vs_eager"] is None


def test_train_step_benchmark_writes_its_table(tmp_path):
    """scripts/benchmark_train_step.py on the tiny config: one row per variant with a positive
    time and its ratio to float32 (a smoke test of the tool, not a measurement)."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark_train_step.py"), "--config", CONFIG,
                          "--batch-size", "1", "--threads", "1", "--steps", "1", "--warmup", "1",
                          "--variants", "fp32,bf16", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "train_step.json").read_text())
    assert set(result["results"]) == {"fp32", "bf16"}
    assert all(_positive(r["p50_s"]) and _positive(r["speedup_vs_fp32"]) for r in result["results"].values())
    assert result["results"]["fp32"]["speedup_vs_fp32"] == 1.0
    assert "| bf16 |" in (tmp_path / "train_step.md").read_text()
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark_train_step.py"), "--variants", "fp64"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown variants" in bad.stderr
