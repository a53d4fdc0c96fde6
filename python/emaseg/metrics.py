"""mIoU the way mmsegmentation's IoUMetric computes it, from one confusion matrix.

Pixels labelled `ignore_index` are skipped. Per class: IoU = TP / (TP + FP + FN) and
Acc = TP / (TP + FN), both NaN when their denominator is 0; mIoU and mAcc are the means over the
classes that are not NaN (a class absent from both labels and predictions does not count), and
aAcc = all TP / all labelled pixels. Values are in percent, like mmseg's logs.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist


class ConfusionMatrix:
    """`mat[label, prediction]` pixel counts (int64), summed over images and processes.

    Args:
        num_classes: number of classes C; labels and predictions are in 0..C-1.
        ignore_index: label value to skip.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat: torch.Tensor | None = None

    def update(self, label: torch.Tensor, pred: torch.Tensor) -> None:
        """Adds one batch; `label` and `pred` are integer tensors of the same shape, same device."""
        if label.shape != pred.shape:
            raise ValueError(f"label shape {tuple(label.shape)} != prediction shape {tuple(pred.shape)}")
        n = self.num_classes
        if self.mat is None:
            self.mat = torch.zeros(n, n, dtype=torch.int64, device=label.device)
        label, pred = label.reshape(-1).long(), pred.reshape(-1).long()
        keep = (label != self.ignore_index) & (label >= 0) & (label < n)
        counts = torch.bincount(n * label[keep] + pred[keep].to(label.device), minlength=n * n)
        self.mat += counts.reshape(n, n)

    def reduce_from_all_processes(self) -> None:
        """Sums the matrices of all processes (a no-op outside torch.distributed)."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        if self.mat is None:  # a rank whose shard was empty still has to join the all_reduce
            self.mat = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
            if dist.get_backend() == "nccl":
                self.mat = self.mat.cuda()
        dist.all_reduce(self.mat)

    def compute(self) -> dict[str, object]:
        """{"aAcc", "mIoU", "mAcc": float %, "IoU", "Acc": per-class lists of float % (NaN = absent)}."""
        n = self.num_classes
        mat = (self.mat if self.mat is not None else torch.zeros(n, n, dtype=torch.int64)).double().cpu()
        tp = mat.diag()
        labelled = mat.sum(1)           # TP + FN
        predicted = mat.sum(0)          # TP + FP (over labelled pixels only)
        union = labelled + predicted - tp
        iou = tp / union                # 0 / 0 -> NaN: class in neither labels nor predictions
        acc = tp / labelled             # NaN when the class is never labelled
        total = labelled.sum().item()
        return {
            "aAcc": 100.0 * tp.sum().item() / total if total > 0 else math.nan,
            "mIoU": 100.0 * _nanmean(iou),
            "mAcc": 100.0 * _nanmean(acc),
            "IoU": [100.0 * v for v in iou.tolist()],
            "Acc": [100.0 * v for v in acc.tolist()],
        }

    def table(self, class_names: list[str] | None = None) -> str:
        """Per-class IoU/Acc and the summary, as fixed-width text."""
        r = self.compute()
        names = class_names or [f"class_{i}" for i in range(self.num_classes)]
        width = max(12, max(len(s) for s in names) + 2)
        lines = [f"{'class':<{width}}{'IoU':>8}{'Acc':>8}", "-" * (width + 16)]
        for name, iou, acc in zip(names, r["IoU"], r["Acc"]):
            lines.append(f"{name:<{width}}{_fmt(iou):>8}{_fmt(acc):>8}")
        lines.append("-" * (width + 16))
        lines.append(f"aAcc {_fmt(r['aAcc'])}  mIoU {_fmt(r['mIoU'])}  mAcc {_fmt(r['mAcc'])}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _nanmean(values: torch.Tensor) -> float:
    valid = values[~torch.isnan(values)]
    return valid.mean().item() if valid.numel() > 0 else math.nan


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.2f}"
