"""Benchmark tooling behind `scripts/benchmark.py`, beside it: not part of the emaseg library.

    timing.py       latency statistics, peak RSS, thread set-up (no torch import)
    flops.py        FLOP counting, a reference non-local block, the EMA-vs-attention probe,
                    the machine's matmul and 3x3-conv GFLOP/s
    worker.py       one backend timed in its own process: `python -m bench.worker`
    report.py       ratios, the Markdown table, the PNG chart

ONNX export and ONNX Runtime sessions are emaseg.onnx (python/export.py writes .onnx files
with it too). Nothing here imports torch at module level except flops.py, so the ONNX Runtime
worker runs without torch in its address space and its peak RSS is that of an ORT deployment.
"""
