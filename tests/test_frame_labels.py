"""emaseg.frame_labels against the dense path, argmax(F.interpolate(scores)): identical labels
but at near-ties, for every resize the exported files and evaluate.py run."""
import pytest
import torch
import torch.nn.functional as F

from emaseg.frame_labels import decided_cells, frame_labels, near_tie_count, top2

# A differing label's score must lie this close to the largest: float32 rounding of the dense
# resize is ~1e-7 of the scores' magnitude (~10 here).
NEAR_TIE = 1e-5


def dense(scores: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=align_corners)


def street_like(n: int, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Smooth class fields (regions with boundaries, as a network's upsampled logits), plus flat
    areas where all classes tie and planted exact ties of two classes."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, c, max(h // 6, 1), max(w // 6, 1), generator=g) * 6
    scores = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    scores[:, :, : h // 4, : w // 4] = 1.5                            # flat: every class ties
    scores[:, 1, h // 2:, w // 2:] = scores[:, 0, h // 2:, w // 2:]   # class 1 ties class 0
    return scores


def assert_dense_equal(scores: torch.Tensor, size: tuple[int, int], align_corners: bool,
                       dtype: torch.dtype = torch.uint8) -> None:
    labels = frame_labels(scores, size, align_corners, dtype)
    assert labels.dtype == dtype and labels.shape == (scores.shape[0], *size)
    differ, near_ties = near_tie_count(dense(scores, size, align_corners), labels, NEAR_TIE)
    assert differ == near_ties, f"{differ} labels differ from the dense path, only {near_ties} at near-ties"


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape,size", [
    ((1, 19, 32, 57), (1080, 1920)),   # 16:9 upscale
    ((2, 19, 64, 128), (256, 512)),    # batch of 2, 4x
    ((1, 5, 40, 30), (17, 13)),        # downscale, odd sizes
    ((3, 4, 9, 7), (9, 7)),            # same size: the argmax itself
    ((1, 3, 9, 11), (1, 1)),           # one pixel
    ((1, 6, 1, 1), (5, 3)),            # from one pixel
    ((1, 7, 13, 5), (50, 4)),          # up in one axis, down in the other
])
def test_equals_the_dense_path(shape, size, align_corners):
    assert_dense_equal(street_like(*shape, seed=sum(shape)), size, align_corners)


def test_int64_labels_and_many_classes():
    assert_dense_equal(street_like(1, 300, 12, 20, seed=3), (50, 70), False, torch.int64)


def test_nan_and_inf_are_placed_as_the_dense_argmax_places_them():
    scores = street_like(1, 5, 16, 16, seed=4)
    for bad in ("nan", "inf"):
        scores[0, 2, 3, 3] = float(bad)
        for size in ((40, 40), (16, 16)):
            labels = frame_labels(scores, size, False, torch.int64)
            assert torch.equal(labels, dense(scores, size, False).argmax(1))


def test_top2_is_argmax_and_gap():
    scores = street_like(2, 19, 20, 30, seed=5)
    labels, gap = top2(scores, torch.int64)
    assert torch.equal(labels, scores.argmax(1))
    top = scores.topk(2, dim=1).values
    assert torch.equal(gap, top[:, 0] - top[:, 1])


def test_most_pixels_skip_the_dense_resize():
    """What makes it fast: on smooth class fields (no planted ties) almost every cell is decided
    from the network-size labels alone; the flat and tied regions are not."""
    g = torch.Generator().manual_seed(6)
    smooth = F.interpolate(torch.randn(1, 19, 4, 7, generator=g) * 6, size=(64, 114), mode="bilinear")
    # 84% here, where 19 random classes meet at many boundaries; a street frame at 1080p: 98%.
    assert float(decided_cells(smooth, *top2(smooth, torch.uint8)).float().mean()) > 0.75
    tied = street_like(1, 19, 64, 114, seed=6)
    assert not decided_cells(tied, *top2(tied, torch.uint8))[0, :10, :10].any()  # the flat corner


def test_bfloat16_scores():
    scores = street_like(1, 19, 32, 57, seed=7).to(torch.bfloat16)
    labels = frame_labels(scores, (270, 480), False, torch.uint8)
    reference = dense(scores, (270, 480), False).float()
    differ, near_ties = near_tie_count(reference, labels, 0.1)  # bfloat16 ulp at |score| ~10: 0.06
    assert differ == near_ties
