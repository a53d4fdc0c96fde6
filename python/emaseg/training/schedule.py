"""The reference's poly learning rate (mmengine PolyLR, by iteration, spec section 7)."""
from __future__ import annotations

import torch


def poly_lr(iteration: int, *, base_lr: float, total_iters: int, power: float = 0.9, min_lr: float = 1e-4) -> float:
    """lr = min_lr + (base_lr - min_lr) * (1 - iteration / total_iters) ** power, for iteration 0.. total-1.

    mmengine applies its chained form once per finished iteration; the product telescopes to
    exactly this closed form, so iteration 0 trains at `base_lr`.
    """
    progress = min(iteration, total_iters) / total_iters
    return min_lr + (base_lr - min_lr) * (1.0 - progress) ** power


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
