"""Two processes (gloo, CPU): one training forward leaves identical bases on both ranks, equal to
the update computed from both ranks' batches together."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from emaseg.models import EMAModule


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch(rank: int) -> torch.Tensor:
    return torch.randn(2, 16, 4, 6, generator=torch.Generator().manual_seed(100 + rank))


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # same initial bases on both ranks
        ema = EMAModule(channels=16, num_bases=8, num_stages=3, momentum=0.1).train()
        ema(_batch(rank))
        torch.save(ema.bases, os.path.join(out_dir, f"bases{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _per_image_bases(ema: EMAModule, feats: torch.Tensor) -> torch.Tensor:
    """The EM result for each image, before any averaging (eval mode leaves the buffer alone)."""
    b, c, h, w = feats.shape
    f = feats.reshape(b, c, h * w)
    mu = ema.bases.repeat(b, 1, 1)
    for _ in range(ema.num_stages):
        z = torch.softmax(torch.einsum("bcn,bck->bnk", f, mu), dim=2)
        mu = torch.nn.functional.normalize(torch.einsum("bcn,bnk->bck", f, torch.nn.functional.normalize(z, dim=1, p=1.0)), dim=1)
    return mu


def test_bases_agree_across_ranks(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    b0, b1 = torch.load(tmp_path / "bases0.pt"), torch.load(tmp_path / "bases1.pt")
    assert torch.equal(b0, b1)

    torch.manual_seed(0)
    ema = EMAModule(channels=16, num_bases=8, num_stages=3, momentum=0.1)
    initial = ema.bases.clone()
    # Mean over ranks of each rank's batch mean (equal batch sizes), then L2 norm, then momentum.
    rank_means = [_per_image_bases(ema, _batch(r)).mean(0, keepdim=True) for r in range(2)]
    mean = torch.nn.functional.normalize((rank_means[0] + rank_means[1]) / 2, dim=1)
    expected = 0.9 * initial + 0.1 * mean
    torch.testing.assert_close(b0, expected, rtol=1e-5, atol=1e-6)
    # And it differs from what either rank alone would have produced.
    alone = 0.9 * initial + 0.1 * torch.nn.functional.normalize(rank_means[0], dim=1)
    assert (alone - b0).abs().max() > 1e-4
