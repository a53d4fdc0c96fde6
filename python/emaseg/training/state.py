"""What a resumed run needs beyond the weights, stored in `latest.pth` under "train_state".

The file is our checkpoint (`emaseg.checkpoint.save_checkpoint`, written atomically) with one
extra entry, so `latest.pth` is also a usable model file. Everything in it loads with
`weights_only=True`: RNG states are stored as tensors, ints and lists, never pickled objects.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def capture_rng() -> dict[str, Any]:
    """The RNG states of this process: torch (CPU and every CUDA device), numpy, python."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def gather_rng() -> list[dict[str, Any]]:
    """Every process's RNG state, indexed by rank (collective: call on all ranks)."""
    mine = capture_rng()
    if not (dist.is_available() and dist.is_initialized()):
        return [mine]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, mine)
    return states


def train_state(*, iteration: int, seed: int, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler | None, best_miou: float | None,
                rng: list[dict[str, Any]]) -> dict[str, Any]:
    """The resume record: iteration (the schedule's whole state), seed (the data stream's),
    optimiser and loss-scaler states, best validation mIoU so far, per-rank RNG states."""
    return {
        "iteration": iteration,
        "seed": seed,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "best_miou": best_miou,
        "rng": rng,
    }


def restore_rng_for_rank(rng: list[dict[str, Any]], rank: int, world_size: int) -> bool:
    """Restores this rank's saved RNG; returns False (and uses rank 0's) if the world size changed."""
    if len(rng) == world_size:
        restore_rng(rng[rank])
        return True
    restore_rng(rng[0])
    return False
