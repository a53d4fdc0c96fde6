"""DataLoaders for iteration-based training and for evaluation.

Training draws from an endless, resumable stream: the sample at global position p (iteration
`it` holds positions it*G .. it*G+G-1, G = batch size x world size) is element p % n of the
permutation of epoch p // n, seeded by (seed, epoch), and its augmentation is seeded by
(seed, p). Each process takes its own slice of every global batch (the distributed sampler).
Nothing depends on the number of workers or on wall-clock order, so resuming at iteration k
replays exactly what a straight run would have produced from k on.
"""
from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np
import torch
import torch.utils.data

from .rare_class import RareClassSampler, RareClassTable


class InfiniteSampler(torch.utils.data.Sampler):
    """Yields `(index, (seed, position))` for this process's slice of every global batch.

    Args:
        dataset_size: number of samples n.
        batch_size: samples per process and iteration.
        seed: run seed; fixes the permutations and the augmentations.
        rank, world_size: this process and the number of processes.
        start_iter: the first iteration to produce (resume).
    """

    def __init__(self, dataset_size: int, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start_iter: int = 0) -> None:
        if dataset_size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        if seed < 0:
            raise ValueError("the seed must be >= 0")
        self.n = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_iter = start_iter

    def __iter__(self) -> Iterator[tuple[int, tuple[int, int]]]:
        global_batch = self.batch_size * self.world_size
        epoch, order = -1, np.empty(0, dtype=np.int64)
        iteration = self.start_iter
        while True:
            first = iteration * global_batch + self.rank * self.batch_size
            for position in range(first, first + self.batch_size):
                if position // self.n != epoch:
                    epoch = position // self.n
                    order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
                yield int(order[position % self.n]), (self.seed, position)
            iteration += 1


def _before_fork(num_workers: int) -> None:
    """With worker processes, switch off OpenCV's thread pool in this process first: a forked
    worker inherits the pool's state but not its threads and can deadlock in it; the workers are
    the parallelism anyway (mmengine does the same). Worker seeding needs no hook: the loader
    seeds python/numpy/torch in each worker from its generator, and augmentation is seeded per
    sample."""
    if num_workers > 0:
        cv2.setNumThreads(0)


def train_batches(dataset: torch.utils.data.Dataset, *, batch_size: int, num_workers: int, seed: int,
                  start_iter: int = 0, rank: int = 0, world_size: int = 1, pin_memory: bool = False,
                  rare_classes: RareClassTable | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless iterator of (uint8 images (B, H, W, 3), uint8 labels (B, H, W)) from `start_iter` on.

    Args:
        dataset: a `SegmentationDataset` with its training transform (fixed-size samples).
        batch_size: per process.
        num_workers: loader processes (0: load in this process).
        seed: run seed (see `InfiniteSampler`).
        start_iter: first iteration (after a resume).
        rank, world_size: distributed slice.
        pin_memory: page-locked batches for fast, asynchronous copies to the GPU.
        rare_classes: draw images by rare-class sampling (`emaseg.data.rare_class`) instead of epochs.
    """
    if rare_classes is not None:
        sampler = RareClassSampler(rare_classes, batch_size=batch_size, seed=seed, rank=rank,
                                   world_size=world_size, start_iter=start_iter)
    else:
        sampler = InfiniteSampler(len(dataset), batch_size=batch_size, seed=seed, rank=rank,
                                  world_size=world_size, start_iter=start_iter)
    _before_fork(num_workers)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
        drop_last=True, persistent_workers=num_workers > 0,
        # Its own generator: building the loader must not consume the global torch RNG (dropout's),
        # or a resumed run would diverge from a straight one.
        generator=torch.Generator().manual_seed(seed),
    )
    return iter(loader)


class ShardSampler(torch.utils.data.Sampler):
    """Indices rank, rank + W, rank + 2W, ... < n: every sample exactly once over all processes
    (unlike DistributedSampler, no padding duplicates that would count twice in the metric)."""

    def __init__(self, dataset_size: int, *, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, dataset_size, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def eval_loader(dataset: torch.utils.data.Dataset, *, num_workers: int, rank: int = 0, world_size: int = 1,
                pin_memory: bool = False, max_images: int | None = None) -> torch.utils.data.DataLoader:
    """Batch-1 loader over this process's shard of the first `max_images` samples (images differ in size)."""
    size = len(dataset) if max_images is None else min(max_images, len(dataset))
    _before_fork(num_workers)
    return torch.utils.data.DataLoader(
        dataset, batch_size=1, sampler=ShardSampler(size, rank=rank, world_size=world_size),
        num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(0),
    )


def error_message(error: BaseException) -> str:
    """The one line a user acts on, also for an error re-raised from a loader worker (whose text
    is "Caught X in DataLoader worker ... Original Traceback ...", the message on the last line)."""
    text = str(error).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text
