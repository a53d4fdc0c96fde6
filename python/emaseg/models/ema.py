"""The Expectation-Maximization Attention unit (spec section 3.1), self-contained.

The EM iterations run without gradient; in training the module itself keeps the moving average
of the bases (the original authors did it in their train script). The distributed reduction is
behind `torch.jit.unused`, so the scripted (exported) path never touches `torch.distributed`.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class EMAModule(nn.Module):
    """Args:
        channels: feature channels C.
        num_bases: number of bases K.
        num_stages: EM iterations.
        momentum: weight of the new batch bases in the moving average (training only).
    """

    def __init__(self, *, channels: int, num_bases: int, num_stages: int, momentum: float) -> None:
        super().__init__()
        if num_stages < 1:
            raise ValueError("num_stages must be >= 1")
        self.num_bases = num_bases
        self.num_stages = num_stages
        self.momentum = momentum
        bases = torch.zeros(1, channels, num_bases)
        bases.normal_(0, math.sqrt(2.0 / num_bases))
        self.register_buffer("bases", F.normalize(bases, dim=1, p=2.0))  # (1, C, K)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b, c, h, w = feats.shape
        feats = feats.reshape(b, c, h * w)                                   # (B, C, N)
        bases = self.bases.repeat(b, 1, 1)                                   # (B, C, K)
        with torch.no_grad():
            attention = torch.empty(0, dtype=feats.dtype, device=feats.device)  # set by the loop
            for _ in range(self.num_stages):
                attention = torch.einsum("bcn,bck->bnk", feats, bases)       # (B, N, K) E-step logits
                attention = F.softmax(attention, dim=2)                      # responsibilities over K
                attention_normed = F.normalize(attention, dim=1, p=1.0)      # (B, N, K) L1 over pixels
                bases = torch.einsum("bcn,bnk->bck", feats, attention_normed)  # (B, C, K) M-step
                bases = F.normalize(bases, dim=1, p=2.0)                     # (B, C, K) unit bases
        recon = torch.einsum("bck,bnk->bcn", bases, attention)              # (B, C, N)
        recon = recon.reshape(b, c, h, w)                                    # (B, C, H, W)
        if self.training:
            self._update_bases(bases)
        return recon

    @torch.jit.unused
    def _update_bases(self, bases: torch.Tensor) -> None:
        with torch.no_grad():
            bases = bases.mean(dim=0, keepdim=True)                          # (1, C, K) batch mean
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                bases = bases.clone()
                torch.distributed.all_reduce(bases.div_(torch.distributed.get_world_size()))
            bases = F.normalize(bases, dim=1, p=2.0)
            # Not re-normalised after the average: the reference keeps it that way.
            self.bases.copy_((1 - self.momentum) * self.bases + self.momentum * bases)
