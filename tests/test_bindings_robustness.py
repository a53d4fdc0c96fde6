"""emaseg.runtime under arbitrary arrays (hypothesis): any dtype, shape, layout, read-only, empty or
tiny. Every call gives the result of a contiguous uint8 copy or raises TypeError, ValueError or
emaseg.runtime.Error; it never crashes and never writes to its input.

The tiny contract model (cpp/tests/make_test_model.py) keeps each example at a millisecond; its
labels from Python's torch are the independent oracle.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import import_runtime
from cpp_helpers import load_make_test_model

runtime = import_runtime()

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64, np.float16, np.float32,
          np.float64, np.bool_]
# How an array reaches the call: as made, or as a view with another layout.
LAYOUTS = ["as_is", "crop", "row_step", "column_step", "flip_rows", "flip_channels", "transpose",
           "fortran", "broadcast", "read_only"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return load_make_test_model().make_test_model(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture(scope="module")
def segmenter(model_path):
    segmenter = runtime.Segmenter(model_path, threads=1)
    segmenter.warmup((16, 16))  # the profiling runs of the TorchScript graph, once
    return segmenter


@pytest.fixture(scope="module")
def oracle(model_path):
    module = torch.jit.load(str(model_path))

    def labels(frame: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(frame.copy(order="C"))[None])[0].numpy()

    return labels


def relayout(array: np.ndarray, layout: str) -> np.ndarray:
    """A view (or copy) of `array` with another memory layout; same shape except for the views
    that must drop a row or column."""
    if layout == "crop" and array.ndim >= 2:
        return array[1:, 1:]  # rows of packed pixels with a longer step: used without a copy
    if layout == "row_step" and array.ndim >= 1:
        return array[::2]
    if layout == "column_step" and array.ndim >= 2:
        return array[:, ::2]
    if layout == "flip_rows" and array.ndim >= 1:
        return array[::-1]
    if layout == "flip_channels" and array.ndim == 3:
        return array[..., ::-1]
    if layout == "transpose" and array.ndim >= 2:
        return array.swapaxes(0, 1)
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "broadcast" and array.ndim >= 1 and array.shape[0] > 0:
        return np.broadcast_to(array[:1], array.shape)  # zero strides, read-only
    if layout == "read_only":
        view = array.view()
        view.flags.writeable = False
        return view
    return array


def side() -> st.SearchStrategy[int]:
    # Half the sides below the model's 8-pixel minimum (0 included), half above.
    return st.one_of(st.integers(0, 9), st.integers(8, 40))


@st.composite
def any_array(draw, *, channels=(None, 1, 2, 3, 4), ndims=(0, 1, 2, 3, 4)) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.sampled_from(ndims))
    if ndim == 3:
        shape = (draw(side()), draw(side()), draw(st.sampled_from([c for c in channels if c] or [3])))
    elif ndim == 4:
        shape = (draw(st.integers(0, 3)), draw(side()), draw(side()), draw(st.sampled_from([1, 3, 4])))
    else:
        shape = tuple(draw(side()) for _ in range(ndim))
    array = draw(hnp.arrays(dtype, shape))
    return relayout(array, draw(st.sampled_from(LAYOUTS)))


@st.composite
def frame_like(draw) -> np.ndarray:
    """Mostly valid uint8 H x W x 3 frames in every layout; otherwise anything."""
    if draw(st.booleans()):
        shape = (draw(side()), draw(side()), 3)
        frame = draw(hnp.arrays(np.uint8, shape, elements=st.integers(0, 255)))
        return relayout(frame, draw(st.sampled_from(LAYOUTS)))
    return draw(any_array())


def is_frame(array: np.ndarray) -> bool:
    return array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3


def check_refusal(call, array: np.ndarray) -> None:
    """`call(array)` must refuse an array that is not a usable frame, in the right words."""
    if not (isinstance(array, np.ndarray) and array.dtype == np.uint8):
        with pytest.raises(TypeError, match="uint8|numpy array"):
            call(array)
    elif not is_frame(array):
        with pytest.raises(ValueError, match="H x W x 3"):
            call(array)
    else:
        with pytest.raises(runtime.Error, match="empty frame|at least 8x8") as caught:
            call(array)
        assert caught.value.kind == "argument"


def usable(array: np.ndarray) -> bool:
    return is_frame(array) and min(array.shape[:2]) >= 8


@SETTINGS
@given(frame=frame_like())
def test_segment_any_array(segmenter, oracle, frame):
    before = frame.copy()
    event("segmented" if usable(frame) else "refused")
    if usable(frame):
        labels = segmenter.segment(frame)
        assert labels.dtype == np.uint8 and labels.shape == frame.shape[:2]
        np.testing.assert_array_equal(labels, segmenter.segment(np.ascontiguousarray(frame)))
        np.testing.assert_array_equal(labels, oracle(frame))
    else:
        check_refusal(segmenter.segment, frame)
    np.testing.assert_array_equal(frame, before)  # inputs are only read


@SETTINGS
@given(frame=frame_like())
def test_probabilities_any_array(segmenter, frame):
    if usable(frame):
        probs = segmenter.probabilities(frame)
        assert probs.dtype == np.float32 and probs.shape == (4, *frame.shape[:2])
        np.testing.assert_array_equal(probs, segmenter.probabilities(np.ascontiguousarray(frame)))
        np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    else:
        check_refusal(segmenter.probabilities, frame)


@SETTINGS
@given(frames=st.one_of(st.lists(frame_like(), max_size=4), any_array(ndims=(4,))))
def test_segment_batch_any_frames(segmenter, frames):
    items = list(frames)
    if all(usable(f) for f in items):
        got = segmenter.segment_batch(frames)
        assert len(got) == len(items)
        for frame, labels in zip(items, got):
            np.testing.assert_array_equal(labels, segmenter.segment(np.ascontiguousarray(frame)))
        return
    # Frames are converted in order (TypeError, ValueError) before the runtime checks their
    # sizes (Error), so the first array that is no frame at all decides, else the first small one.
    culprit = next((f for f in items if not is_frame(f)), None)
    if culprit is None:
        culprit = next(f for f in items if not usable(f))
    check_refusal(lambda _: segmenter.segment_batch(frames), culprit)


@SETTINGS
@given(labels=any_array(ndims=(0, 1, 2, 3)), layout=st.sampled_from(LAYOUTS))
def test_colorize_any_labels(segmenter, labels, layout):
    labels = relayout(labels, layout)
    integer = labels.dtype.kind in "iu"
    if integer and labels.ndim == 2 and labels.size > 0:
        lut = np.concatenate([np.array(segmenter.metadata.palette, np.uint8)[:, ::-1],
                              np.zeros((1, 3), np.uint8)])  # index 4: any id outside the palette
        ids = labels.astype(np.int64)
        expected = lut[np.where((ids >= 0) & (ids < 4), ids, 4)]
        np.testing.assert_array_equal(segmenter.colorize(labels), expected)
    elif not integer:
        with pytest.raises(TypeError, match="integer array"):
            segmenter.colorize(labels)
    elif labels.ndim != 2:
        with pytest.raises(ValueError, match="H x W"):
            segmenter.colorize(labels)
    else:
        with pytest.raises(runtime.Error, match="single-channel label map"):
            segmenter.colorize(labels)


@SETTINGS
@given(frame=frame_like(), alpha=st.one_of(st.floats(-0.5, 1.5), st.just(float("nan"))))
def test_overlay_any_frame(segmenter, frame, alpha):
    if not usable(frame):
        labels = np.zeros(frame.shape[:2] if frame.ndim >= 2 else (8, 8), np.uint8)
        if is_frame(frame) and min(frame.shape[:2]) > 0:
            # overlay needs no model, so small frames are fine; wrong alpha is the only failure
            if 0 <= alpha <= 1:
                assert segmenter.overlay(frame, labels, alpha).shape == frame.shape
            else:
                with pytest.raises(runtime.Error, match="alpha"):
                    segmenter.overlay(frame, labels, alpha)
            return
        with pytest.raises((TypeError, ValueError, runtime.Error)):
            segmenter.overlay(frame, labels, alpha)
        return
    labels = segmenter.segment(frame)
    if 0 <= alpha <= 1:
        np.testing.assert_array_equal(segmenter.overlay(frame, labels, alpha),
                                      segmenter.overlay(np.ascontiguousarray(frame), labels, alpha))
    else:
        with pytest.raises(runtime.Error, match=r"alpha must lie in \[0, 1\]"):
            segmenter.overlay(frame, labels, alpha)


@pytest.mark.parametrize("value", [None, 3, "frame.png", b"\x00" * 300, [[[0, 0, 0]] * 8] * 8,
                                   torch.zeros(8, 8, 3, dtype=torch.uint8)],
                         ids=["None", "int", "str", "bytes", "list", "tensor"])
def test_non_arrays_are_type_errors(segmenter, value):
    for call in (segmenter.segment, segmenter.probabilities, segmenter.colorize):
        with pytest.raises(TypeError):
            call(value)
    with pytest.raises(TypeError):
        segmenter.segment_batch([value])
