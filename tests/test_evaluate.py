"""Evaluation: sliding-window grid (spec section 8), evaluate(), and the evaluate.py CLI."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import emaseg
import fake_data
from emaseg.classes import CITYSCAPES_PALETTE
from emaseg.config import get_config
from emaseg.data.datasets import build_dataset
from emaseg.data.loader import eval_loader
from emaseg.evaluation import evaluate
from emaseg.inference import SegInference, predict_logits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
import train  # noqa: E402

torch.set_num_threads(1)
CONFIG = "emanet_r18w8-d8_128x256_synthetic"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


class WindowRecorder(nn.Module):
    """A fake segmentor: reads each window's position from the input (channel 0 holds the row
    index, channel 1 the column index) and answers with a constant logit = window number."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.windows: list[tuple[int, int, int, int]] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y1, x1 = int(x[0, 0, 0, 0]), int(x[0, 1, 0, 0])
        self.windows.append((y1, y1 + x.shape[2], x1, x1 + x.shape[3]))
        value = float(len(self.windows))
        return {"out": torch.full((x.shape[0], self.num_classes, (x.shape[2] + 7) // 8, (x.shape[3] + 7) // 8), value)}


def coordinates(h: int, w: int) -> torch.Tensor:
    rows = torch.arange(h, dtype=torch.float32).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float32).view(1, w).expand(h, w)
    return torch.stack([rows, cols, torch.zeros(h, w)]).unsqueeze(0)  # (1, 3, H, W)


def test_slide_follows_reference_grid():
    # 1024x2048, crop 769, stride 513: h_grids = (1024-769+512)//513+1 = 2, w_grids = (2048-769+512)//513+1 = 4;
    # the last row/column windows are clamped back inside the image (y1 = 1024-769 = 255, x1 = 2048-769 = 1279).
    expected = [(y1, y1 + 769, x1, x1 + 769) for y1 in (0, 255) for x1 in (0, 513, 1026, 1279)]
    net = WindowRecorder()
    seg = SegInference(net, num_classes=2, align_corners=True, mode="slide", crop_size=(769, 769), stride=(513, 513))
    out = seg(coordinates(1024, 2048))
    assert net.windows == expected
    # Each pixel is the mean of the windows covering it (window k answers k).
    for (y, x) in [(0, 0), (300, 600), (1023, 2047), (700, 1300), (100, 1100)]:
        covering = [k + 1 for k, (y1, y2, x1, x2) in enumerate(expected) if y1 <= y < y2 and x1 <= x < x2]
        assert out[0, 0, y, x].item() == pytest.approx(sum(covering) / len(covering))


def test_slide_grid_small_image_and_uneven_stride():
    # H smaller than the crop: one row, window clamped to the image (y 0..100).
    net = WindowRecorder()
    SegInference(net, num_classes=2, align_corners=False, mode="slide", crop_size=(128, 128),
                 stride=(96, 96))(coordinates(100, 300))
    # w_grids = (300-128+95)//96+1 = 3: x1 = 0, 96, then 192 clamped to 300-128 = 172.
    assert net.windows == [(0, 100, 0, 128), (0, 100, 96, 224), (0, 100, 172, 300)]


def test_slide_equals_whole_when_crop_covers_image():
    cfg = get_config(CONFIG)
    torch.manual_seed(0)
    model = emaseg.build_model(cfg).eval()
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 96, 160, 3), dtype=np.uint8))
    cfg.data.test_scale = (160, 96)  # keep the image at its size
    cfg.test.crop_size, cfg.test.stride = (128, 192), (64, 64)
    with torch.no_grad():
        whole = predict_logits(model, images, cfg, mode="whole")
        slide = predict_logits(model, images, cfg, mode="slide")
    assert whole.shape == (1, 19, 96, 160)
    torch.testing.assert_close(slide, whole, rtol=0, atol=0)  # one window = the whole image, same ops


PRESENT = (0, 2, 10, 11, 13)  # the fake scenes' classes


def colour_predictor(images: torch.Tensor) -> torch.Tensor:
    """Nearest palette colour among the scenes' classes: near-perfect on fake_data's painted scenes."""
    lut = torch.tensor([CITYSCAPES_PALETTE[c][::-1] for c in PRESENT], dtype=torch.float32)  # (5, 3) BGR
    distances = ((images.float().unsqueeze(-2) - lut) ** 2).sum(-1)                          # (N, H, W, 5)
    return torch.tensor(PRESENT)[distances.argmin(-1)]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return fake_data.cityscapes_tree(tmp_path_factory.mktemp("evaldata"), train=4, val=3)


def test_evaluate_scores_a_predictor(data_root):
    dataset = build_dataset(get_config(CONFIG).data, data_root, "val", train=False)
    matrix = evaluate(colour_predictor, eval_loader(dataset, num_workers=0), num_classes=19, progress=False)
    r = matrix.compute()
    assert r["mIoU"] > 99.0 and r["aAcc"] > 99.0
    # Classes in neither labels nor predictions are NaN and left out of the mean.
    assert all((not np.isnan(v)) == (i in PRESENT) for i, v in enumerate(r["IoU"]))
    # Every labelled pixel of the 3 images is counted once; the 2 ignore rows are not.
    assert int(matrix.mat.sum()) == 3 * (128 - 2) * 256
    one = evaluate(colour_predictor, eval_loader(dataset, num_workers=0, max_images=1), num_classes=19,
                   progress=False)
    assert int(one.mat.sum()) == (128 - 2) * 256


@pytest.fixture(scope="module")
def checkpoint(data_root, tmp_path_factory) -> Path:
    work_dir = tmp_path_factory.mktemp("evalrun")
    train.main(train.get_args_parser().parse_args([
        "--config", CONFIG, "--data-root", str(data_root), "--work-dir", str(work_dir), "--device", "cpu",
        "--iters", "12", "--batch-size", "2", "--workers", "0", "--val-interval", "0"]))
    return work_dir / "latest.pth"


def run_evaluate(*args: str, torchrun: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable]
    if torchrun:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd += ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    cmd += [str(ROOT / "python" / "evaluate.py"), "--device", "cpu", "--workers", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)


@pytest.fixture(scope="module")
def eager(checkpoint, data_root, tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path_factory.mktemp("eager") / "result.json"
    run = run_evaluate("--checkpoint", str(checkpoint), "--data-root", str(data_root), "--json", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    return run, json.loads(out.read_text())


def test_cli_checkpoint(eager):
    run, result = eager
    assert "mIoU:" in run.stdout and "road" in run.stdout and "(3 images, val)" in run.stdout
    assert set(result["per_class"]) == set(emaseg.classes.CITYSCAPES_CLASSES)
    assert result["per_class"]["train"]["IoU"] in (None, 0.0)  # NaN (absent) is written as null
    assert 0.0 <= result["mIoU"] <= 100.0 and result["images"] == 3 and result["mode"] == "whole"


def test_cli_distributed_matches_single_process(checkpoint, data_root, eager, tmp_path):
    # Two processes, each a shard (2 + 1 images), confusion matrices summed: the same numbers.
    sharded = run_evaluate("--checkpoint", str(checkpoint), "--data-root", str(data_root), "--json",
                           str(tmp_path / "two.json"), torchrun=True)
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    two, one = json.loads((tmp_path / "two.json").read_text()), eager[1]
    assert (two["mIoU"], two["aAcc"], two["per_class"]) == (one["mIoU"], one["aAcc"], one["per_class"])


def test_cli_exported_model_scores_like_checkpoint(checkpoint, data_root, eager, tmp_path):
    from emaseg.export.exporter import export_model

    exported = tmp_path / "model.pt"
    export_model(checkpoint, exported)
    black_box = run_evaluate("--model", str(exported), "--data-root", str(data_root), "--json",
                             str(tmp_path / "exported.json"))
    assert black_box.returncode == 0, black_box.stderr[-2000:]
    a, b = eager[1], json.loads((tmp_path / "exported.json").read_text())
    # Same test path inside the file; tolerance for a few boundary pixels of float rounding.
    assert abs(a["mIoU"] - b["mIoU"]) < 0.05 and abs(a["aAcc"] - b["aAcc"]) < 0.05


def test_cli_errors(checkpoint, data_root, tmp_path):
    out = run_evaluate("--checkpoint", str(checkpoint), "--data-root", str(tmp_path / "missing"))
    assert out.returncode == 1 and "error: data root" in out.stderr and "does not exist" in out.stderr
    out = run_evaluate("--model", str(tmp_path / "none.pt"), "--data-root", str(data_root))
    assert out.returncode == 1 and "none.pt: no such file" in out.stderr
