"""train.py learns: the tiny config trained on generated street scenes for ~1-2 CPU-minutes scores
far above chance on held-out scenes.

Chance here: predicting the majority class (road) everywhere gives aAcc ~32% and mIoU ~1.7
(one class of 19 at IoU 32%); uniform guessing gives mIoU < 3.
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_tiny_model_learns_street_scenes(tmp_path):
    data, work = tmp_path / "data", tmp_path / "work"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_synthetic.py"), "--out", str(data),
                    "--train", "200", "--val", "30", "--size", "128x256", "--seed", "3", "--quiet"],
                   check=True, capture_output=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(ROOT / "python" / "train.py"), "--config",
                             "emanet_r18w8-d8_128x256_synthetic", "--data-root", str(data), "--work-dir", str(work),
                             "--iters", "300", "--val-interval", "300", "--workers", "0", "--seed", "0",
                             "--device", "cpu"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    val = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    final = [r for r in val if r["type"] == "val"][-1]
    # Measured 9.25 mIoU / 57.7 aAcc on this machine (seed 0); thresholds leave margin for other CPUs.
    assert final["mIoU"] >= 6.0, final
    assert final["aAcc"] >= 45.0, final
    assert (work / "best.pth").exists() and (work / "curves.png").exists()
