"""emaseg.runtime, the pybind11 bindings of the C++ runtime: API, errors, video, GIL.

Most tests use the tiny contract model (cpp/tests/make_test_model.py), whose labels follow from
the pixels' colours; a small real EMANet export (random weights) checks the metadata and the
labels against the exported file run by Python's torch. Every Segmenter uses threads=1.
Skipped, with the build command, when the extension is not built.
"""
from __future__ import annotations

import gc
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, import_runtime
from cpp_helpers import (
    CLI,
    load_make_test_model,
    make_test_models,
    python_labels,
    read_video,
    run_cli,
    synthetic_frames,
    write_video,
)

runtime = import_runtime()
Segmenter, Error = runtime.Segmenter, runtime.Error

SIZES = [(97, 131), (120, 200), (8, 8), (203, 301)]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    # Extra matmuls make a model call last long enough to watch other threads during it.
    return make_test_models(tmp_path_factory.mktemp("models"), tiny={}, slow={"work": 200}, slower={"work": 2000},
                            no_metadata={"with_metadata": False}, future={"format_version": 2})


@pytest.fixture(scope="module")
def tiny(models) -> Segmenter:
    return Segmenter(models["tiny"], threads=1)


@pytest.fixture(scope="module")
def emanet(tmp_path_factory) -> Path:
    """A real export: the small test config with random weights (19 classes), keep-ratio resize."""
    from emaseg import build_model, get_config, save_checkpoint
    from emaseg.export import export_model

    root = tmp_path_factory.mktemp("emanet")
    torch.manual_seed(0)
    cfg = get_config("emanet_r18w8-d8_128x256_synthetic")
    save_checkpoint(root / "ckpt.pth", build_model(cfg), cfg)
    export_model(root / "ckpt.pth", root / "model.pt")
    return root / "model.pt"


@pytest.fixture(scope="module")
def emanet_runtime(emanet) -> Segmenter:
    # Shared: the first two calls of a TorchScript module profile its graph (seconds).
    return Segmenter(emanet, threads=1)


@pytest.fixture(scope="module")
def emanet_file(emanet) -> torch.jit.ScriptModule:
    return torch.jit.load(str(emanet))


def frames_of(size: tuple[int, int], seed: int) -> list[np.ndarray]:
    """Flat-colour blocks (clear labels) and uniform noise (every class boundary at once)."""
    blocks = synthetic_frames(1, *size)[0] if min(size) >= 10 else np.full((*size, 3), 200, np.uint8)
    noise = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    return [blocks, noise]


def palette_bgr(segmenter: Segmenter) -> np.ndarray:
    return np.array(segmenter.metadata.palette, np.uint8)[:, ::-1]


# ---------------------------------------------------------------------------------------------
# Import and metadata


def test_imports_in_a_fresh_interpreter_without_path_tricks(tmp_path):
    """The extension finds LibTorch through its RUNPATH even before torch is imported, and the
    installed package finds the extension: no PYTHONPATH, no LD_LIBRARY_PATH."""
    so = Path(importlib.util.find_spec("emaseg._runtime").origin)
    assert "site-packages" in so.parts, so  # pip installed it, not a build in the checkout
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('_runtime', {str(so)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print('torch' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
    for code, output in [(probe, "False"),
                         ("import emaseg.runtime as r; print(*r.__all__, r.Error.__mro__[1].__name__)",
                          "Error Metadata Segmenter process_streams process_video RuntimeError")]:
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == output


def test_stub_lists_the_same_names():
    stub = (ROOT / "python" / "emaseg" / "runtime.pyi").read_text()
    for name in runtime.__all__:
        assert f"class {name}" in stub or f"def {name}(" in stub
    methods = ["segment", "segment_batch", "probabilities", "colorize", "overlay", "warmup", "from_bytes"]
    for method in methods:
        assert hasattr(Segmenter, method) and f"def {method}(" in stub


def test_metadata_matches_export_inspect(emanet, emanet_runtime):
    printed = subprocess.run([sys.executable, str(ROOT / "python" / "export.py"), "--inspect", str(emanet)],
                             capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    expected = json.loads(printed.stdout)
    segmenter = emanet_runtime
    meta = segmenter.metadata
    assert meta.to_dict() == expected
    assert json.loads(meta.json) == expected
    for key in ("format", "format_version", "config_name", "num_classes", "class_names", "mode",
                "flip", "align_corners", "dtype", "label_dtype", "checkpoint_sha256",
                "torch_version", "emaseg_version"):
        assert getattr(meta, key) == expected[key], key
    assert meta.palette == expected["palette"] and len(meta.palette) == meta.num_classes == 19
    np.testing.assert_allclose(meta.mean, expected["mean"])
    np.testing.assert_allclose(meta.std, expected["std"])
    assert (meta.resize_type, meta.resize) == ("scale", expected["resize"]["scale"])
    assert meta.slide_crop == expected["slide"]["crop_size"]
    assert meta.slide_stride == expected["slide"]["stride"]
    assert segmenter.device == "cpu" and segmenter.threads == 1 and segmenter.half is False
    assert repr(segmenter) == f"<emaseg.runtime.Segmenter {expected['config_name']} (19 classes) on cpu>"


def test_metadata_keeps_its_segmenter_alive(models):
    meta = Segmenter(models["tiny"], threads=1).metadata
    gc.collect()
    assert meta.class_names == load_make_test_model().CLASS_NAMES


# ---------------------------------------------------------------------------------------------
# Labels, batches, probabilities


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_segment_equals_the_exported_file_in_python(emanet_runtime, emanet_file, size):
    for frame in frames_of(size, seed=size[1]):
        labels = emanet_runtime.segment(frame)
        with torch.inference_mode():
            expected = emanet_file(torch.from_numpy(frame)[None])[0].numpy()
        assert labels.dtype == np.uint8 and labels.shape == size
        np.testing.assert_array_equal(labels, expected)


def test_segment_on_the_contract_model(tiny):
    frame = load_make_test_model().sample_image(48, 64)  # four bands: one class each
    labels = tiny.segment(frame)
    np.testing.assert_array_equal(labels[0], np.repeat(np.arange(4, dtype=np.uint8), 16))


def test_batch_equals_single(tiny, emanet_runtime):
    for segmenter in (tiny, emanet_runtime):
        frames = [f for size in SIZES for f in frames_of(size, seed=1)]
        frames.insert(1, frames[0].copy())  # a run of equal sizes shares one model call
        batch = segmenter.segment_batch(frames)
        assert len(batch) == len(frames)
        for frame, labels in zip(frames, batch):
            np.testing.assert_array_equal(labels, segmenter.segment(frame))
    stacked = np.stack(frames_of((40, 56), seed=2))  # an N x H x W x 3 array works too
    assert [l.tolist() for l in tiny.segment_batch(stacked)] == [tiny.segment(f).tolist() for f in stacked]
    assert tiny.segment_batch([]) == []
    assert tiny.segment_batch(iter([stacked[0]]))[0].shape == (40, 56)


def test_probabilities_sum_to_one_and_match_the_file(emanet_runtime, emanet_file):
    segmenter, module = emanet_runtime, emanet_file
    frame = frames_of((97, 131), seed=3)[1]
    probs = segmenter.probabilities(frame)
    assert probs.dtype == np.float32 and probs.shape == (19, 97, 131)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)  # float32 softmax over 19 classes
    with torch.inference_mode():
        expected = module.probabilities(torch.from_numpy(frame)[None])[0].numpy()
    # The same TorchScript on the same LibTorch and thread count: bit-identical (measured 0).
    assert np.abs(probs - expected).max() <= 1e-6
    np.testing.assert_array_equal(probs.argmax(0), segmenter.segment(frame))


@pytest.fixture(scope="module")
def emanet_frozen(emanet, tmp_path_factory) -> Path:
    """The same weights exported with --optimize (already frozen)."""
    from emaseg.export import export_model

    path = tmp_path_factory.mktemp("emanet_frozen") / "model.pt"
    export_model(emanet.parent / "ckpt.pth", path, optimize=True)
    return path


@pytest.mark.parametrize("model", ["tiny", "emanet", "emanet_frozen"])
def test_optimize_keeps_labels_and_probabilities(request, models, emanet_runtime, model):
    path = models["tiny"] if model == "tiny" else request.getfixturevalue(model)
    plain = Segmenter(path, threads=1) if model != "emanet" else emanet_runtime
    optimized = Segmenter(path, threads=1, optimize=True)
    assert optimized.optimize and not plain.optimize
    for frame in frames_of((97, 131), seed=21):
        np.testing.assert_array_equal(optimized.segment(frame), plain.segment(frame))
        assert np.abs(optimized.probabilities(frame) - plain.probabilities(frame)).max() <= 1e-4
    frames = frames_of((64, 96), seed=22)
    for got, frame in zip(optimized.segment_batch(frames), frames):
        np.testing.assert_array_equal(got, plain.segment(frame))
    from_bytes = Segmenter.from_bytes(Path(path).read_bytes(), threads=1, optimize=True)
    np.testing.assert_array_equal(from_bytes.segment(frames[0]), plain.segment(frames[0]))


def test_results_own_their_memory(models):
    segmenter = Segmenter(models["tiny"], threads=1)
    frame = load_make_test_model().sample_image(48, 64)
    labels, probs = segmenter.segment(frame), segmenter.probabilities(frame)
    colours = segmenter.colorize(labels)
    expected = (labels.copy(), probs.copy(), colours.copy())
    del segmenter
    gc.collect()
    for got, want in zip((labels, probs, colours), expected):
        np.testing.assert_array_equal(got, want)
        assert got.flags.writeable and got.flags.c_contiguous
    labels[:] = 0  # writable, and no other result shares the buffer
    np.testing.assert_array_equal(colours, expected[2])


# ---------------------------------------------------------------------------------------------
# Colours


def test_colorize_uses_the_palette(tiny):
    labels = np.arange(6 * 7, dtype=np.uint8).reshape(6, 7) % 6  # ids 4 and 5 are not classes
    colours = tiny.colorize(labels)
    lut = np.concatenate([palette_bgr(tiny), np.zeros((2, 3), np.uint8)])  # outside: black
    np.testing.assert_array_equal(colours, lut[labels])
    # int64 (numpy's argmax), uint16 and int32 give the same picture; huge or negative ids are black.
    for dtype in (np.int64, np.uint16, np.int32, np.int8):
        np.testing.assert_array_equal(tiny.colorize(labels.astype(dtype)), colours)
    odd = np.array([[-1, 2**40, 3, 1]], dtype=np.int64)
    np.testing.assert_array_equal(tiny.colorize(odd), lut[[[5, 5, 3, 1]]])


def test_overlay_alpha_math(tiny):
    frame = frames_of((24, 40), seed=4)[1]
    labels = tiny.segment(frame)
    colours = palette_bgr(tiny)[labels].astype(np.float64)
    for alpha in (0.0, 0.25, 0.5, 0.8, 1.0):
        shown = tiny.overlay(frame, labels, alpha=alpha)
        expected = frame * (1 - alpha) + colours * alpha
        assert shown.dtype == np.uint8 and shown.shape == frame.shape
        assert np.abs(shown - expected).max() <= 0.5 + 1e-6, alpha  # rounded to the nearest level
    np.testing.assert_array_equal(tiny.overlay(frame, labels, alpha=0.0), frame)
    np.testing.assert_array_equal(tiny.overlay(frame, labels, 1.0), palette_bgr(tiny)[labels])
    with pytest.raises(Error, match=r"alpha must lie in \[0, 1\]") as caught:
        tiny.overlay(frame, labels, alpha=1.5)
    assert caught.value.kind == "argument"
    with pytest.raises(Error, match="frame and labels differ in size"):
        tiny.overlay(frame, labels[:-1])


# ---------------------------------------------------------------------------------------------
# Loading from memory, errors


def test_from_bytes_equals_from_path(models):
    data = models["tiny"].read_bytes()
    frame = frames_of((97, 131), seed=5)[1]
    expected = Segmenter(models["tiny"], threads=1).segment(frame)
    for buffer in (data, bytearray(data), memoryview(data)):
        segmenter = Segmenter.from_bytes(buffer, threads=1)
        assert segmenter.metadata.json == Segmenter(models["tiny"]).metadata.json
        np.testing.assert_array_equal(segmenter.segment(frame), expected)
    with pytest.raises(Error, match="not a TorchScript archive") as caught:
        Segmenter.from_bytes(bytes(range(256)) * 16)
    assert caught.value.kind == "model"
    with pytest.raises(Error, match="the in-memory model is empty"):
        Segmenter.from_bytes(b"")


ERRORS = [
    # (model, keyword arguments, kind, part of the C++ message)
    ("missing", {}, "model", "does not exist"),
    ("no_metadata", {}, "model", "without metadata.json"),
    ("future", {}, "model", "format_version 2"),
    ("tiny", {"device": "gpu"}, "argument", "unknown device 'gpu'"),
    ("tiny", {"half": True}, "argument", "half precision needs a CUDA device"),
    ("tiny", {"threads": -1}, "argument", "threads must lie in 0.."),
    ("tiny", {"threads": 100000}, "argument", "threads must lie in 0.."),
    ("tiny", {"max_pixels": -1}, "argument", "max_pixels must be >= 0"),
    ("tiny", {"device": "cuda"}, "device", "CUDA is not available"),
]


@pytest.mark.parametrize("name, kwargs, kind, message", ERRORS, ids=[e[3] for e in ERRORS])
def test_errors_become_runtime_errors_with_the_cpp_message(models, name, kwargs, kind, message):
    if kind == "device" and torch.cuda.is_available():
        pytest.skip("CUDA is available here, so device cuda is not an error")
    with pytest.raises(Error) as caught:
        Segmenter(models[name], **kwargs)
    assert isinstance(caught.value, RuntimeError)
    assert caught.value.kind == kind
    assert message in str(caught.value)


def test_error_message_is_the_clis(models, tmp_path):
    """The CLI prints `ema_seg: error: <what()>` for the same failure: the text must agree."""
    if not CLI.is_file():
        pytest.skip(f"{CLI} is not built")
    with pytest.raises(Error) as caught:
        Segmenter(models["missing"], threads=1)
    result = run_cli("--model", models["missing"], "--image", tmp_path / "x.png", "--threads", "1")
    assert result.returncode == 3
    assert result.stderr.strip() == f"ema_seg: error: {caught.value}"


def test_frame_errors(tiny):
    with pytest.raises(Error, match="needs at least 8x8") as caught:
        tiny.segment(np.zeros((7, 30, 3), np.uint8))
    assert caught.value.kind == "argument"
    with pytest.raises(Error, match="empty frame"):
        tiny.segment(np.zeros((0, 30, 3), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        tiny.segment(np.zeros((20, 30, 3), np.float32))
    with pytest.raises(ValueError, match="COLOR_GRAY2BGR"):
        tiny.segment(np.zeros((20, 30), np.uint8))
    with pytest.raises(ValueError, match="COLOR_BGRA2BGR"):
        tiny.probabilities(np.zeros((20, 30, 4), np.uint8))
    with pytest.raises(TypeError, match="numpy array"):
        tiny.segment([[0, 0, 0]])
    with pytest.raises(ValueError, match="N x H x W x 3"):
        tiny.segment_batch(np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(TypeError, match="list of frames"):
        tiny.segment_batch("frames")


# ---------------------------------------------------------------------------------------------
# Video


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """A 20-frame FFV1 video (lossless: masks compare exactly) and its decoded frames."""
    path = write_video(tmp_path_factory.mktemp("clip") / "clip.avi", synthetic_frames(20, 96, 160))
    return path, read_video(path)[0]


def test_process_video_writes_the_overlay_and_masks(tmp_path, tiny, models, clip):
    video, frames = clip
    calls = []
    summary = runtime.process_video(video, tmp_path / "out.mp4", model=tiny, mask_dir=tmp_path / "masks",
                                    progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 20) for i in range(1, 21)]
    assert (summary["frames"], summary["inferred"], summary["total"]) == (20, 20, 20)
    assert summary["stopped"] is False and summary["output"] == str(tmp_path / "out.mp4")
    assert summary["model_ms"]["count"] == 20
    written, _, size = read_video(tmp_path / "out.mp4")
    assert len(written) == 20 and size == (160, 96)
    expected = python_labels(models["tiny"], frames)
    assert sum(summary["class_pixels"]) == 20 * 96 * 160
    np.testing.assert_array_equal(summary["class_pixels"], np.bincount(np.stack(expected).ravel(), minlength=4))
    for i, labels in enumerate(expected):
        np.testing.assert_array_equal(read_video_mask(tmp_path / "masks" / f"frame_{i:06d}.png"), labels)


def read_video_mask(path: Path) -> np.ndarray:
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask is not None, path
    return mask


def test_process_video_stops_when_progress_says_so(tmp_path, models, clip):
    summary = runtime.process_video(clip[0], tmp_path / "out.mp4", model=str(models["tiny"]), threads=1,
                                    every=2, progress=lambda done, total: done < 5)
    assert (summary["frames"], summary["inferred"], summary["reused"]) == (5, 3, 2)
    assert summary["stopped"] is True
    assert len(read_video(tmp_path / "out.mp4")[0]) == 5  # closed properly: playable


def test_process_video_errors(tmp_path, tiny, clip):
    with pytest.raises(Error, match="does not exist") as caught:
        runtime.process_video(tmp_path / "missing.avi", tmp_path / "out.mp4", model=tiny)
    assert caught.value.kind == "input"
    assert not (tmp_path / "out.mp4").exists()

    class Stop(Exception):
        pass

    def fail(done, total):
        raise Stop(done)

    with pytest.raises(Stop):  # the callback's exception comes through unchanged
        runtime.process_video(clip[0], tmp_path / "out.mp4", model=tiny, progress=fail)
    with pytest.raises(Error, match="cannot write video") as caught:
        runtime.process_video(clip[0], tmp_path / "no" / "out.mp4", model=tiny)
    assert caught.value.kind == "output"
    with pytest.raises(Error, match="is the input video"):
        runtime.process_video(clip[0], clip[0], model=tiny)
    assert len(read_video(clip[0])[0]) == 20  # untouched
    with pytest.raises(Error, match="alpha"):
        runtime.process_video(clip[0], model=tiny, alpha=2.0)
    with pytest.raises(TypeError):
        runtime.process_video(clip[0], model=None)


# ---------------------------------------------------------------------------------------------
# The GIL


def test_python_runs_while_segment_runs(models):
    """Another Python thread keeps running while one thread is inside segment(): if the call
    held the GIL, no tick could be recorded between its start and end (at most one or two
    at its edges, when the interpreter switches threads just before the call)."""
    segmenter = Segmenter(models["slower"], threads=1)
    frame = synthetic_frames(1, 32, 48)[0]
    segmenter.segment(frame)  # the first calls profile and optimise the TorchScript graph
    span = []

    def work():
        span.append(time.perf_counter())
        segmenter.segment(frame)
        span.append(time.perf_counter())

    worker = threading.Thread(target=work)
    ticks = []
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    start, end = span
    inside = [t for t in ticks if start < t < end]
    assert end - start > 0.02, "the slow model is too fast to tell"
    assert len(inside) >= 5, (len(inside), end - start)


def test_two_segmenters_run_at_the_same_time(models):
    """Thread B completes whole segment() calls while thread A is inside its own (A's model does
    10x B's work). Were the GIL held, B could finish at most one call in A's span, in the
    moment before A enters segment()."""
    slow, slower = Segmenter(models["slow"], threads=1), Segmenter(models["slower"], threads=1)
    frame = synthetic_frames(1, 32, 48)[0]
    for segmenter in (slow, slower):
        segmenter.segment(frame)
    a_span, b_spans, results = [], [], {}
    a_done = threading.Event()

    def a():
        a_span.append(time.perf_counter())
        results["a"] = slower.segment(frame)
        a_span.append(time.perf_counter())
        a_done.set()

    def b():
        while not a_done.is_set():
            start = time.perf_counter()
            results["b"] = slow.segment(frame)
            b_spans.append((start, time.perf_counter()))

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    inside = [s for s in b_spans if a_span[0] < s[0] and s[1] < a_span[1]]
    assert len(inside) >= 2, (len(inside), a_span, b_spans)
    expected = python_labels(models["tiny"], [frame])[0]
    np.testing.assert_array_equal(results["a"], expected)
    np.testing.assert_array_equal(results["b"], expected)
