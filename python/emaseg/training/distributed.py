"""torchrun set-up: the environment variables it sets are the whole configuration.

One process per GPU (or CPU worker); `torchrun --nproc_per_node N train.py ...`, plus torchrun's
own --nnodes/--rdzv-* flags for several machines.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def init_distributed(device: str) -> tuple[bool, int, int, int]:
    """Joins the process group if launched by torchrun. Returns (distributed, rank, world_size, local_rank).

    NCCL on CUDA, gloo on CPU; under CUDA each process takes GPU `LOCAL_RANK`.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False, 0, 1, 0
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if device == "cuda" else "gloo", timeout=timedelta(minutes=30))
    return True, rank, world_size, local_rank


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def mean_over_processes(value: torch.Tensor) -> torch.Tensor:
    """All-reduce mean of a tensor (itself outside torch.distributed). A NaN anywhere reaches every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()
