"""The training iteration of the reference recipe and the loop over one interval of them.

`TrainStep` holds everything one SGD iteration needs (model, optimizer, normalisation, loss, LR
schedule, mixed precision), so the loop takes the step and the data instead of a dozen pieces.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Iterator

import torch
from torch import nn
from tqdm import tqdm

from ..config import Config
from ..inference import preprocess
from ..losses import segmentation_loss
from . import distributed as dist_utils
from .errors import NonFiniteLoss
from .logging import JsonlLog
from .schedule import poly_lr, set_lr

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TrainStep:
    """One iteration: poly LR, normalise, forward, CE (decode) + aux CE, backward, SGD step.

    The loss is averaged over processes and checked before the backward pass, so a NaN/inf stops
    every rank at once, before any weight is touched. `amp` is None, "bf16" (CUDA or CPU autocast)
    or "fp16" (CUDA, with a GradScaler, whose state the checkpoint keeps)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: Config, device: torch.device,
                 *, amp: str | None = None, channels_last: bool = False) -> None:
        self.model, self.optimizer, self.cfg, self.device = model, optimizer, cfg, device
        self.autocast_dtype = AMP_DTYPES[amp] if amp else None
        self.scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
        self.channels_last = channels_last
        self.mean = torch.tensor(cfg.data.mean, device=device)
        self.std = torch.tensor(cfg.data.std, device=device)
        loss = cfg.loss
        self.class_weight = (torch.tensor(loss.class_weight, dtype=torch.float32, device=device)
                             if loss.class_weight else None)
        self.ohem = (loss.ohem_thresh, loss.ohem_min_kept) if loss.ohem else None

    def lr(self, it: int) -> float:
        s = self.cfg.schedule
        return poly_lr(it, base_lr=s.lr, total_iters=s.iters, power=s.poly_power, min_lr=s.min_lr)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        x = preprocess(images, self.mean, self.std, self.cfg.data.bgr_to_rgb)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __call__(self, it: int, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Runs iteration `it` (0-based); returns (loss, decode loss, aux loss), process means."""
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        set_lr(self.optimizer, self.lr(it))
        cfg = self.cfg
        with (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype
              else contextlib.nullcontext()):
            outputs = self.model(self.normalize(images))
            loss, parts = segmentation_loss(outputs, labels, align_corners=cfg.model.align_corners,
                                            aux_weight=cfg.schedule.aux_weight, ignore_index=cfg.data.ignore_index,
                                            class_weight=self.class_weight, ohem=self.ohem)
        values = torch.stack([loss.detach().float(), parts["decode"].float(),
                              parts.get("aux", torch.zeros((), device=loss.device)).float()])
        values = dist_utils.mean_over_processes(values).cpu().double()
        if not math.isfinite(values[0].item()):
            raise NonFiniteLoss(it + 1, values[0].item())
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return values


def train_one_interval(step: TrainStep, batches: Iterator, start_iter: int, stop_iter: int, *,
                       log: JsonlLog | None = None, bar: tqdm | None = None, log_interval: int = 50) -> None:
    """Iterations start_iter .. stop_iter - 1 (the iteration-based counterpart of an epoch),
    logging means of the losses and times every `log_interval` iterations and at the end."""
    step.model.train()
    sums = torch.zeros(3, dtype=torch.float64)
    count, data_time, step_time = 0, 0.0, 0.0
    tick = time.perf_counter()
    for it in range(start_iter, stop_iter):
        images, labels = next(batches)
        data_time += time.perf_counter() - tick
        values = step(it, images, labels)
        sums += values
        count += 1
        now = time.perf_counter()
        step_time += now - tick
        tick = now
        if bar is not None:
            bar.set_postfix(loss=f"{values[0].item():.4f}", lr=f"{step.lr(it):.2e}", refresh=False)
            bar.update(1)
        if log is not None and ((it + 1) % log_interval == 0 or it + 1 == stop_iter):
            mean = (sums / count).tolist()
            record = {"type": "train", "iter": it + 1, "loss": mean[0], "decode_loss": mean[1],
                      "aux_loss": mean[2], "lr": step.lr(it), "time": step_time / count,
                      "data_time": data_time / count}
            if step.device.type == "cuda":
                record["mem_gb"] = torch.cuda.max_memory_allocated(step.device) / 2**30
            log.write(record)
            sums.zero_()
            count, data_time, step_time = 0, 0.0, 0.0
