"""The reference's training loss (spec section 5), outside the model.

Cross-entropy ignoring 255, averaged over ALL label pixels (mmseg's `avg_non_ignore=False`):
ignored pixels count in the denominator with a loss of 0, unlike PyTorch's default mean over
the non-ignored ones. Logits (1/8 resolution) are bilinearly resized to the label size first,
with the head's `align_corners`. Total = decode + aux_weight * aux.

Two options of mmseg's decode head, both off by default (`Config.loss`):
- `class_weight`: CrossEntropyLoss(class_weight=...): pixel i's loss is scaled by w[label_i]; the
  mean still divides by every label pixel (mmseg does not renormalise by the weights).
- OHEM (`OHEMPixelSampler(thresh, min_kept)`, decode head only, as mmseg's configs set it): only
  the hard pixels count, a 0/1 weight per pixel (`ohem_weights`); the mean still divides by all.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _resized(logits: torch.Tensor, label: torch.Tensor, align_corners: bool) -> torch.Tensor:
    return F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=align_corners).float()


def pixel_losses(logits: torch.Tensor, label: torch.Tensor, *, ignore_index: int = 255,
                 class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) logits at label size, (B, H, W) label -> (B, H, W) CE, 0 where ignored."""
    return F.cross_entropy(logits, label.long(), weight=class_weight, ignore_index=ignore_index, reduction="none")


@torch.no_grad()
def ohem_weights(logits: torch.Tensor, label: torch.Tensor, *, thresh: float | None, min_kept: int,
                 ignore_index: int = 255, class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """mmseg's OHEMPixelSampler.sample: a (B, H, W) 0/1 weight over the labelled pixels.

    With `thresh`: keep the pixels whose softmax probability of their true class is below
    max(thresh, p_k), p_k being the (k+1)-th smallest such probability, k = min_kept * B (the last
    one when fewer pixels are labelled), so that at least about min_kept per image stay.
    Without: keep the min_kept * B pixels of largest loss (class weights included)."""
    label = label.long()
    valid = label != ignore_index
    weight = torch.zeros(label.shape, dtype=logits.dtype, device=logits.device)
    kept = min_kept * label.shape[0]
    valid_weight = weight[valid]
    if thresh is not None:
        target = label.masked_fill(~valid, 0).unsqueeze(1)
        prob = F.softmax(logits, dim=1).gather(1, target).squeeze(1)[valid]
        # The (k+1)-th smallest, as mmseg's sort()[k] gives, without sorting a million pixels.
        floor = prob.kthvalue(min(kept, prob.numel() - 1) + 1).values.item() if prob.numel() > 0 else 0.0
        valid_weight[prob < max(floor, thresh)] = 1.0
    else:
        losses = pixel_losses(logits, label, ignore_index=ignore_index, class_weight=class_weight)[valid]
        _, order = losses.sort(descending=True)
        valid_weight[order[:kept]] = 1.0
    weight[valid] = valid_weight
    return weight


def cross_entropy(logits: torch.Tensor, label: torch.Tensor, *, align_corners: bool, ignore_index: int = 255,
                  class_weight: torch.Tensor | None = None, ohem: tuple[float | None, int] | None = None
                  ) -> torch.Tensor:
    """logits (B, C, h, w), label (B, H, W) int -> scalar: sum of (weighted) per-pixel CE / label.numel().

    `ohem` is (thresh, min_kept) for the OHEM pixel sampler, None for every pixel."""
    logits = _resized(logits, label, align_corners)
    if class_weight is None and ohem is None:  # the reference's default, in one fused call
        total = F.cross_entropy(logits, label.long(), ignore_index=ignore_index, reduction="sum")
        return total / label.numel()
    losses = pixel_losses(logits, label, ignore_index=ignore_index, class_weight=class_weight)
    if ohem is not None:
        losses = losses * ohem_weights(logits, label, thresh=ohem[0], min_kept=ohem[1], ignore_index=ignore_index,
                                       class_weight=class_weight)
    return losses.sum() / label.numel()


def segmentation_loss(outputs: dict[str, torch.Tensor], label: torch.Tensor, *, align_corners: bool,
                      aux_weight: float = 0.4, ignore_index: int = 255, class_weight: torch.Tensor | None = None,
                      ohem: tuple[float | None, int] | None = None
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The model's output dict and labels -> (total loss, {"decode": ..., "aux": ...} detached).

    Class weights apply to both heads (each head's CrossEntropyLoss carries them in mmseg's
    configs); OHEM to the decode head only."""
    decode = cross_entropy(outputs["out"], label, align_corners=align_corners, ignore_index=ignore_index,
                           class_weight=class_weight, ohem=ohem)
    parts = {"decode": decode.detach()}
    total = decode
    if "aux" in outputs:
        aux = cross_entropy(outputs["aux"], label, align_corners=align_corners, ignore_index=ignore_index,
                            class_weight=class_weight)
        parts["aux"] = aux.detach()
        total = total + aux_weight * aux
    return total, parts
