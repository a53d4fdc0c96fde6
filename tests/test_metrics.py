"""ConfusionMatrix against mmseg's IoUMetric definitions on hand-counted examples."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from emaseg.metrics import ConfusionMatrix

torch.set_num_threads(1)


def test_hand_counted():
    # 4 classes. Class 3 appears nowhere -> NaN, excluded from the means. Class 2 only predicted -> IoU 0.
    label = torch.tensor([[0, 0, 0, 1], [1, 1, 255, 255]])
    pred = torch.tensor([[0, 0, 1, 1], [1, 2, 3, 0]])         # predictions on ignored pixels do not count
    cm = ConfusionMatrix(4, ignore_index=255)
    cm.update(label, pred)
    r = cm.compute()
    # class 0: TP 2, FN 1, FP 0 -> IoU 2/3, Acc 2/3; class 1: TP 2, FN 1 (pred 2), FP 1 -> IoU 2/4, Acc 2/3
    # class 2: TP 0, FP 1 -> IoU 0, Acc NaN (never labelled); class 3: nothing -> NaN, NaN
    assert r["IoU"][0] == pytest.approx(200 / 3) and r["IoU"][1] == pytest.approx(50.0)
    assert r["IoU"][2] == 0.0 and math.isnan(r["IoU"][3])
    assert r["Acc"][0] == pytest.approx(200 / 3) and r["Acc"][1] == pytest.approx(200 / 3)
    assert math.isnan(r["Acc"][2]) and math.isnan(r["Acc"][3])
    assert r["mIoU"] == pytest.approx((200 / 3 + 50 + 0) / 3)
    assert r["mAcc"] == pytest.approx(200 / 3)
    assert r["aAcc"] == pytest.approx(100 * 4 / 6)


def test_accumulates_over_updates_and_table():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    cm.update(torch.tensor([1, 1]), torch.tensor([0, 1]))
    assert cm.mat.tolist() == [[1, 0], [1, 2]]
    r = cm.compute()
    assert r["IoU"] == pytest.approx([50.0, 200 / 3]) and r["aAcc"] == pytest.approx(75.0)
    table = cm.table(["road", "car"])
    assert "road" in table and "66.67" in table and "mIoU 58.33" in table


def test_empty_matrix_is_nan():
    r = ConfusionMatrix(3).compute()
    assert math.isnan(r["mIoU"]) and math.isnan(r["aAcc"])


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(2).update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long))


def test_reduce_from_all_processes_gloo(tmp_path):
    """Two processes with different halves of the data give the single-process matrix."""
    script = tmp_path / "reduce.py"
    script.write_text(textwrap.dedent("""
        import json, sys, torch, torch.distributed as dist
        from emaseg.metrics import ConfusionMatrix
        torch.set_num_threads(1)
        dist.init_process_group("gloo")
        rank = dist.get_rank()
        cm = ConfusionMatrix(3)
        if rank == 0:
            cm.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
        else:
            cm.update(torch.tensor([2, 2, 255]), torch.tensor([2, 0, 1]))
        cm.reduce_from_all_processes()
        with open(f"{sys.argv[1]}/rank{rank}.json", "w") as f:
            json.dump(cm.mat.tolist(), f)
        dist.destroy_process_group()
    """))
    port = _free_port()
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(port), str(script), str(tmp_path)],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    expected = [[1, 0, 0], [0, 1, 0], [1, 1, 1]]
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
