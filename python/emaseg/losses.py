"""The reference's training loss (spec section 5), outside the model.

Cross-entropy ignoring 255, averaged over ALL label pixels (mmseg's `avg_non_ignore=False`):
ignored pixels count in the denominator with a loss of 0, unlike PyTorch's default mean over
the non-ignored ones. Logits (1/8 resolution) are bilinearly resized to the label size first,
with the head's `align_corners`. Total = decode + aux_weight * aux.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, label: torch.Tensor, *, align_corners: bool,
                  ignore_index: int = 255) -> torch.Tensor:
    """logits (B, C, h, w), label (B, H, W) int -> scalar: sum of per-pixel CE / label.numel()."""
    logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=align_corners)
    total = F.cross_entropy(logits.float(), label.long(), ignore_index=ignore_index, reduction="sum")
    return total / label.numel()


def segmentation_loss(outputs: dict[str, torch.Tensor], label: torch.Tensor, *, align_corners: bool,
                      aux_weight: float = 0.4, ignore_index: int = 255
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The model's output dict and labels -> (total loss, {"decode": ..., "aux": ...} detached)."""
    decode = cross_entropy(outputs["out"], label, align_corners=align_corners, ignore_index=ignore_index)
    parts = {"decode": decode.detach()}
    total = decode
    if "aux" in outputs:
        aux = cross_entropy(outputs["aux"], label, align_corners=align_corners, ignore_index=ignore_index)
        parts["aux"] = aux.detach()
        total = total + aux_weight * aux
    return total, parts
