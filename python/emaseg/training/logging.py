"""The run's records: `log.jsonl` (one JSON object per line) and `curves.png` drawn from it."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, write_atomic


class JsonlLog:
    """Appends records `{"type": "train"|"val"|..., "iter": i, ...}` to a JSON-lines file.

    A fresh run starts a new file; a resumed run keeps the records up to its start iteration and
    drops later ones (written by the interrupted run after its last checkpoint), so the log
    reads as one run.
    """

    def __init__(self, path: str | os.PathLike, resume_iter: int | None = None) -> None:
        self.path = Path(path)
        kept: list[str] = []
        if resume_iter is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("iter", 0) <= resume_iter:
                        kept.append(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash
        write_atomic(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(clean) + "\n")


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_curves(log_path: str | os.PathLike, png_path: str | os.PathLike) -> None:
    """Training loss, learning rate and validation mIoU against iteration, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    train = [r for r in records if r.get("type") == "train" and r.get("loss") is not None]
    val = [r for r in records if r.get("type") == "val" and r.get("mIoU") is not None]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot([r["iter"] for r in train], [r["loss"] for r in train], label="total")
    if train and "decode_loss" in train[0]:
        axes[0].plot([r["iter"] for r in train], [r["decode_loss"] for r in train], label="decode", alpha=0.7)
    axes[0].set(title="training loss", xlabel="iteration")
    axes[0].legend()
    axes[1].plot([r["iter"] for r in train], [r["lr"] for r in train])
    axes[1].set(title="learning rate", xlabel="iteration")
    axes[2].plot([r["iter"] for r in val], [r["mIoU"] for r in val], marker="o")
    axes[2].set(title="validation mIoU (%)", xlabel="iteration")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
