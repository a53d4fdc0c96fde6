"""The work dir and resuming a run from its latest.pth."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..atomic import same_file
from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import Config, config_differences
from .errors import TrainingError
from .state import gather_rng, train_state


def prepare_work_dir(work_dir: Path) -> Path:
    """Creates the work dir; a path that is a file, or a folder that cannot be made, is a
    TrainingError (one line) rather than an OSError traceback."""
    if work_dir.exists() and not work_dir.is_dir():
        raise TrainingError(f"--work-dir {work_dir} is a file, not a folder: choose another --work-dir")
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainingError(f"cannot create --work-dir {work_dir}: {e.strerror or e}") from e
    if not os.access(work_dir, os.W_OK | os.X_OK):
        raise TrainingError(f"--work-dir {work_dir} is not writable")
    return work_dir


def check_load_from(load_from: str | None, work_dir: Path, resuming: bool) -> None:
    """A fresh run rewrites latest.pth and best.pth: refuse to start from one of them, which the
    run would overwrite (resuming from latest.pth is the intended exception)."""
    if not load_from or resuming:
        return
    for name in ("latest.pth", "best.pth"):
        if (work_dir / name).exists() and same_file(load_from, work_dir / name):
            raise TrainingError(f"--load-from {load_from} is this run's {work_dir / name}, which training "
                                f"overwrites: copy it elsewhere first, pick another --work-dir, or --resume")


@dataclass
class ResumePoint:
    """What a resumed run continues from: the checkpoint and its training state."""
    path: Path
    checkpoint: dict[str, Any]

    @property
    def state(self) -> dict[str, Any]:
        return self.checkpoint["train_state"]

    @property
    def seed(self) -> int:
        return self.state["seed"]

    @property
    def iteration(self) -> int:
        return self.state["iteration"]

    @property
    def best_miou(self) -> float | None:
        return self.state["best_miou"]

    def restore_optimizer(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
        optimizer.load_state_dict(self.state["optimizer"])
        if scaler is not None and self.state["scaler"] is not None:
            scaler.load_state_dict(self.state["scaler"])


def find_resume(resume: str | None, work_dir: Path, cfg: Config, seed: int,
                say: Callable[[str], None]) -> ResumePoint | None:
    """--resume PATH, or with "auto" work_dir/latest.pth when it exists (a fresh start otherwise).
    Warns about config differences and a --seed the resumed run does not use."""
    if resume == "auto":
        path = work_dir / "latest.pth"
        if not path.is_file():
            say(f"--resume auto: no {path}, starting from scratch")
            return None
    elif resume:
        path = Path(resume)
    else:
        return None
    checkpoint = load_checkpoint(path)
    if "train_state" not in checkpoint:
        raise TrainingError(f"{path} has no training state (a model file such as best.pth?); "
                            f"use --load-from to start from its weights")
    point = ResumePoint(path, checkpoint)
    diffs = config_differences(checkpoint["config"], cfg.to_dict())
    if diffs:
        say(f"warning: the config differs from the one {path} was trained with: {'; '.join(diffs)}")
    if point.seed != seed:
        say(f"resuming with the run's seed {point.seed} (not --seed {seed})")
    return point


def save_latest(path: Path, model: torch.nn.Module, cfg: Config, dataset: Any, *, iteration: int, seed: int,
                optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None, best_miou: float | None,
                main_process: bool) -> None:
    """latest.pth: the model plus everything `find_resume` needs to continue bit-exactly. Every
    rank must call it (each one's RNG state goes into the file); only the main process writes."""
    rng = gather_rng()
    if main_process:
        state = train_state(iteration=iteration, seed=seed, optimizer=optimizer, scaler=scaler,
                            best_miou=best_miou, rng=rng)
        save_checkpoint(path, model, cfg, class_names=dataset.classes, palette=dataset.palette,
                        extra={"train_state": state})
