"""Labels at the frame size without resizing every class plane to it.

The reference's labels are argmax over classes of bilinear_resize(scores, frame size), with
`scores` (N, C, h, w) at the network size. Each frame pixel's score vector is a convex
combination (weights >= 0, summing to 1) of the score vectors of its 2x2 source pixels. Where one
class is the strict maximum at all four by a margin far above float rounding, it is the argmax of
every such combination: the label is known without interpolating the C planes. On street scenes
that holds for ~98% of a 1080p frame. The remaining pixels get the dense formula, one by one.

The labels equal the dense path's except at near-ties (pixels whose top-2 gap in the dense path
is within float rounding, where the dense path's own rounding decides). Everything here scripts
with TorchScript and traces with torch.export, so every exported file runs this code.
"""
from typing import Tuple

import torch

from .resize import _exporting



def margin(dtype: torch.dtype) -> float:
    """The top-2 gap, as a share of the largest |score|, above which a label is sure. (Literals:
    TorchScript cannot read module globals.)"""
    if dtype == torch.float32 or dtype == torch.float64:
        # Far above float32 rounding of a bilinear combination (a few ulp, ~1e-7 of the magnitude).
        return 1e-4
    # bfloat16 and float16: the dense resize rounds each value to 8 (11) bits, which can turn a
    # small gap into a tie; 1/32 of the largest |score| is 4 bfloat16 ulps above that.
    return 0.03125


def top2(scores: torch.Tensor, label_dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per pixel of (N, C, h, w): the argmax (first index on ties) and the gap between the largest
    and second-largest score (0 on a tie, NaN where a score is NaN). A running maximum over the C
    planes: argmax over dim 1 of NCHW reduces across strided memory and is several times slower."""
    best = scores[:, 0]
    second = torch.full_like(best, float("-inf"))
    # int32 and where(): Inductor vectorises this loop into one pass (0.35 ms for the demo at
    # 256x455); uint8 labels with masked_fill compiled to a scalar loop 12x slower.
    labels = torch.zeros(best.shape, dtype=torch.int32, device=scores.device)
    for k in range(1, scores.shape[1]):
        plane = scores[:, k]
        above = plane > best  # strict: an equal later score keeps the first index
        second = torch.where(above, best, torch.maximum(second, plane))
        best = torch.where(above, plane, best)
        labels = torch.where(above, torch.full_like(labels, k), labels)
    return labels.to(label_dtype), best - second


def source_index(in_size: int, out_size: int, align_corners: bool, device: torch.device
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of `out_size` outputs along one axis, bilinear interpolation's two source indices
    and the weight of the second, computed in float32 as ATen's upsample_bilinear2d does."""
    out = torch.arange(out_size, dtype=torch.float32, device=device)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        pos = out * scale
    else:
        pos = ((out + 0.5) * (in_size / out_size) - 0.5).clamp_min(0.0)
    i0 = pos.floor().to(torch.int64).clamp_max(in_size - 1)
    weight = (pos - i0.to(torch.float32)).clamp(0.0, 1.0)
    i1 = (i0 + 1).clamp_max(in_size - 1)
    return i0, i1, weight


def _stored(t: torch.Tensor) -> torch.Tensor:
    """`t` itself; under torch.export a view that makes Inductor write `t` to memory instead of
    recomputing it inside every consumer (a frame-size gather would otherwise recompute the
    network-size work for each of its millions of pixels)."""
    if torch.jit.is_scripting() or not _exporting() or not _static(t):
        return t
    return t.as_strided(t.shape, t.stride())


@torch.jit.unused
def _static(t: torch.Tensor) -> bool:
    """Whether every size is a number (torch.export with fixed shapes). Freezing cannot yet handle
    as_strided with symbolic sizes (it fails materialising their expressions)."""
    return all(isinstance(d, int) for d in t.shape)


def _pairs_agree(labels: torch.Tensor, sure: torch.Tensor, dim: int) -> torch.Tensor:
    """Whether each pixel and its next neighbour along `dim` (itself at the border) have the same
    label and are both sure."""
    n = labels.shape[dim]
    nxt = torch.arange(1, n + 1, device=labels.device).clamp_max(n - 1)
    return (labels == labels.index_select(dim, nxt)) & sure & sure.index_select(dim, nxt)


def decided_cells(scores: torch.Tensor, labels: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
    """(N, h, w): whether the cell anchored at each source pixel (it, its right, lower and
    lower-right neighbours; itself past the border) has one sure label at all four pixels."""
    # NaN or inf anywhere makes the threshold NaN or inf: nothing is sure, all take the dense formula.
    sure = gap > scores.abs().amax() * margin(scores.dtype)
    rows_agree = _pairs_agree(labels, sure, 2)
    return rows_agree & _pairs_agree(labels, rows_agree, 1)


@torch.jit.unused
def _symbolic_max(a: int, b: int) -> int:
    return torch.sym_max(a, b)


def _at_least_one(n: int) -> int:
    # Under torch.export, max() of a symbolic size would branch on it and pin it.
    return max(n, 1) if torch.jit.is_scripting() or not _exporting() else _symbolic_max(n, 1)


def _cell_spans(index: torch.Tensor, in_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """For each source position i along one axis, the first output position whose first source
    index is i, and how many there are (`index` is non-decreasing)."""
    cells = torch.arange(in_size, device=index.device).unsqueeze(1)            # (in, 1)
    start = (index.unsqueeze(0) < cells).sum(1)
    return start, (index.unsqueeze(0) <= cells).sum(1) - start


def _max_span(in_size: int, out_size: int, align_corners: bool) -> int:
    """A bound on how many outputs share one first source index: an interior cell holds at most
    ceil(out / in) + 1, the border cells of align_corners=False also the clamped outputs
    (below 1.5 x out / in at the first)."""
    if align_corners:
        return (out_size - 1) // _at_least_one(in_size - 1) + 2
    return (3 * out_size + 2 * in_size - 1) // (2 * in_size) + 2


def unknown_label(label_dtype: torch.dtype) -> int:
    """The cell value that marks "label in doubt": never a label (uint8 models have < 256 classes)."""
    return 255 if label_dtype == torch.uint8 else -1


def network_cells(scores: torch.Tensor, label_dtype: torch.dtype) -> torch.Tensor:
    """The network-size half of `frame_labels`: (N, h, w) in `label_dtype`, the label of every cell
    whose four source pixels agree on one sure label, `unknown_label` elsewhere. A .pt2 package's
    compiled network models return this beside the scores (emaseg.export.network)."""
    scores = scores.detach()
    labels, gap = top2(scores, label_dtype)
    labels, gap = _stored(labels), _stored(gap)
    cell = decided_cells(scores, labels, gap)
    return labels.masked_fill(~cell, unknown_label(label_dtype))


def frame_labels(scores: torch.Tensor, size: Tuple[int, int], align_corners: bool,
                 label_dtype: torch.dtype) -> torch.Tensor:
    """argmax(F.interpolate(scores, size, mode="bilinear", align_corners=...), dim=1) in
    `label_dtype`, for scores (N, C, h, w) at the network size: (N, H, W) labels at `size`."""
    h, w = scores.shape[2], scores.shape[3]
    out_h, out_w = size[0], size[1]
    scores = scores.detach()
    # No resize: the argmax itself (argmax places a NaN). Under torch.export only for fixed sizes
    # (comparing symbolic ones would pin them), and NaN scores, which have no data-dependent
    # branch there, are not placed: a network that outputs NaN has failed anyway.
    if torch.jit.is_scripting() or not _exporting():
        if out_h == h and out_w == w:
            return scores.argmax(dim=1).to(label_dtype)
    elif _static(scores) and isinstance(out_h, int) and isinstance(out_w, int) and out_h == h and out_w == w:
        return top2(scores, label_dtype)[0]
    return labels_from_cells(scores, network_cells(scores, label_dtype), size, align_corners, label_dtype)


def labels_from_cells(scores: torch.Tensor, decided: torch.Tensor, size: Tuple[int, int], align_corners: bool,
                      label_dtype: torch.dtype) -> torch.Tensor:
    """The frame-size half of `frame_labels`: from the scores (N, C, h, w) and their
    `network_cells`, the (N, H, W) labels at `size` (a size other than (h, w)). The C++ runtime
    computes the same, bit for bit, for .pt2 packages (cpp/src/frame_labels.cpp)."""
    n, c, h, w = scores.shape[0], scores.shape[1], scores.shape[2], scores.shape[3]
    out_h, out_w = size[0], size[1]
    scores = scores.detach()
    cell = decided != unknown_label(label_dtype)
    y0, y1, wy = source_index(h, out_h, align_corners, scores.device)
    x0, x1, wx = source_index(w, out_w, align_corners, scores.device)
    # Columns first, on the few source rows; then every frame row is a copy of one of them.
    columns = _stored(decided.index_select(2, x0))                               # (N, h, W)
    out = columns.index_select(1, y0)                                            # (N, H, W)

    # The frame pixels of undecided cells, listed from the cells (a frame-size search costs more
    # than all the rest): each cell covers a block of rows x columns of the frame.
    todo = (~cell).view(-1).nonzero().squeeze(1)                                 # (Kc,)
    row_start, row_count = _cell_spans(y0, h)
    col_start, col_count = _cell_spans(x0, w)
    cell_row = torch.div(todo % (h * w), w, rounding_mode="floor")
    cell_col = todo % w
    span_h, span_w = _max_span(h, out_h, align_corners), _max_span(w, out_w, align_corners)
    inside = ((torch.arange(span_h, device=scores.device).view(1, span_h, 1) < row_count[cell_row].view(-1, 1, 1))
              & (torch.arange(span_w, device=scores.device).view(1, 1, span_w) < col_count[cell_col].view(-1, 1, 1)))
    slot = inside.view(-1).nonzero().squeeze(1)                                  # (K,)
    k = torch.div(slot, span_h * span_w, rounding_mode="floor")
    y = row_start[cell_row[k]] + torch.div(slot % (span_h * span_w), span_w, rounding_mode="floor")
    x = col_start[cell_col[k]] + slot % span_w
    b = torch.div(todo[k], h * w, rounding_mode="floor")

    # Their scores: the bilinear formula on the four source vectors, then argmax. In float32,
    # rounded to the scores' dtype at the end, as the dense kernel computes them; channels last,
    # so that a pixel's C scores are adjacent in memory for the gathers.
    pixels = _stored(scores.permute(0, 2, 3, 1).float().contiguous()).view(n * h * w, c)
    base = b * (h * w)
    top, bottom = base + y0[y] * w, base + y1[y] * w
    left, right = x0[x], x1[x]
    ly, lx = wy[y].unsqueeze(1), wx[x].unsqueeze(1)                              # (K, 1)
    upper = pixels[top + left] * (1.0 - lx) + pixels[top + right] * lx           # (K, C)
    lower = pixels[bottom + left] * (1.0 - lx) + pixels[bottom + right] * lx
    values = upper * (1.0 - ly) + lower * ly
    flat = out.view(-1)
    flat.index_put_(((b * out_h + y) * out_w + x,), values.to(scores.dtype).argmax(dim=1).to(label_dtype))
    return out


def near_tie_count(scores: torch.Tensor, labels: torch.Tensor, tolerance: float) -> Tuple[int, int]:
    """How many `labels` (N, H, W) differ from the dense argmax of `scores` (N, C, H, W), and how
    many of those are near-ties: the label's score within `tolerance` of the largest. Not scripted."""
    dense = scores.argmax(dim=1)
    wrong = labels.long() != dense
    differ = int(wrong.sum())
    if differ == 0:
        return 0, 0
    gap = scores.amax(dim=1) - scores.gather(1, labels.long().unsqueeze(1)).squeeze(1)
    return differ, int((gap[wrong] <= tolerance).sum())
