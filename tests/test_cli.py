"""End-to-end tests of the C++ CLI (the installed `ema_seg`) with the tiny contract model.

The model comes from cpp/tests/make_test_model.py; input videos are FFV1 (lossless), so the
CLI and Python decode identical pixels and their labels must agree exactly. Every run uses
--threads 1. Skipped, with the build command, when ema_seg is not installed.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cpp_helpers import (
    load_make_test_model,
    make_test_models,
    python_labels,
    read_video,
    rss_kb,
    run_cli,
    start_cli,
    synthetic_frames,
    write_video,
)

FPS = 25.0
HEIGHT, WIDTH = 96, 160


pytestmark = pytest.mark.usefixtures("built_cli")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    garbage = root / "garbage.pt"
    garbage.write_bytes(bytes(range(256)) * 16)
    # slow: ~400 extra 128x128 matmuls per frame, tens of ms, so a run can be interrupted.
    return {**make_test_models(root, tiny={}, slow={"work": 400}, no_metadata={"with_metadata": False},
                               future={"format_version": 2}), "garbage": garbage}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """A 30-frame 160x96 video at 25 fps and its frames as cv2 decodes them."""
    path = write_video(tmp_path_factory.mktemp("clip") / "clip.avi",
                       synthetic_frames(30, HEIGHT, WIDTH), FPS)
    frames, _, _ = read_video(path)
    assert len(frames) == 30
    return path, frames


def palette_bgr() -> np.ndarray:
    return np.array(load_make_test_model().PALETTE, np.uint8)[:, ::-1]


def read_mask(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask is not None, f"cannot read {path}"
    return mask


# ---------------------------------------------------------------------------------------------
# Video


def test_video_overlay_and_masks_match_python(tmp_path, models, clip):
    video, frames = clip
    out, masks = tmp_path / "out.mp4", tmp_path / "masks"
    result = run_cli("--model", models["tiny"], "--video", video, "--output", out,
                     "--mask-dir", masks, "--threads", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # --quiet

    written, fps, size = read_video(out)
    assert len(written) == len(frames)
    assert size == (WIDTH, HEIGHT)
    assert fps == pytest.approx(FPS, abs=1e-3)

    expected = python_labels(models["tiny"], frames)
    assert sorted(p.name for p in masks.iterdir()) == [f"frame_{i:06d}.png" for i in range(30)]
    for i, labels in enumerate(expected):
        np.testing.assert_array_equal(read_mask(masks / f"frame_{i:06d}.png"), labels)
    assert len(np.unique(np.stack(expected))) == 4  # every class occurs: the check has teeth

    # The overlay is frame/2 + palette/2; the video codec is lossy, so compare on average. Measured mean
    # error is ~1 grey level; 6 still fails for a missing overlay (~40) or swapped R/B (~20).
    blends = [(f.astype(np.float32) + palette_bgr()[l].astype(np.float32)) / 2
              for f, l in zip(frames, expected)]
    error = np.mean([np.abs(w.astype(np.float32) - b).mean() for w, b in zip(written, blends)])
    assert error < 6, error


def test_video_default_output_is_stem_overlay_in_cwd(tmp_path, models, clip):
    video, _ = clip
    result = run_cli("--model", models["tiny"], "--video", video, "--threads", "1", "--quiet",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["clip_overlay.mp4"]
    assert len(read_video(tmp_path / "clip_overlay.mp4")[0]) == 30


def test_overlay_video_is_h264_unless_asked_for_mp4v(tmp_path, models, clip):
    """Browsers play H.264, not mp4v: the overlay video is H.264 where OpenCV can encode it
    (Debian's, through libx264), and the JSON summary says which codec was written."""
    import cv2

    video, _ = clip
    for codec, expected in ((None, "h264"), ("mp4v", "mp4v"), ("h264", "h264")):
        out = tmp_path / f"{codec}.mp4"
        args = ["--codec", codec] if codec else []
        result = run_cli("--model", models["tiny"], "--video", video, "--output", out, "--threads", "1",
                         "--json", *args)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["codec"] == expected and "note" not in result.stderr
        capture = cv2.VideoCapture(str(out))
        code = int(capture.get(cv2.CAP_PROP_FOURCC))
        fourcc = "".join(chr((code >> 8 * i) & 0xFF) for i in range(4))
        assert fourcc in (("avc1", "h264") if expected == "h264" else ("mp4v", "FMP4")), fourcc  # FFmpeg reads MPEG-4 Part 2 back as FMP4
        assert len(read_video(out)[0]) == 30


def test_json_summary(tmp_path, models, clip):
    video, frames = clip
    result = run_cli("--model", models["tiny"], "--video", video, "--output", tmp_path / "o.mp4",
                     "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames"] == summary["inferred"] == 30
    assert summary["dropped"] == summary["unreadable"] == summary["reused"] == 0
    assert summary["interrupted"] is False
    assert summary["fps"] > 0
    assert summary["model_ms"]["count"] == 30
    assert summary["peak_rss_mb"] > 0

    counts = np.bincount(np.stack(python_labels(models["tiny"], frames)).ravel(), minlength=4)
    shares = {c["name"]: c["share"] for c in summary["class_share"]}
    assert list(shares) == ["background", "red", "green", "blue"]
    # Shares are printed with 6 significant digits.
    np.testing.assert_allclose(list(shares.values()), counts / counts.sum(), rtol=1e-5)


def test_every_n_runs_the_model_on_every_nth_frame(tmp_path, models, clip):
    video, frames = clip
    masks = tmp_path / "masks"
    result = run_cli("--model", models["tiny"], "--video", video, "--output", tmp_path / "o.mp4",
                     "--mask-dir", masks, "--every", "3", "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["frames"], summary["inferred"], summary["reused"]) == (30, 10, 20)
    assert sorted(p.name for p in masks.iterdir()) == [f"frame_{i:06d}.png" for i in range(0, 30, 3)]
    assert len(read_video(tmp_path / "o.mp4")[0]) == 30  # the video keeps every frame


def test_max_frames(tmp_path, models, clip):
    video, _ = clip
    result = run_cli("--model", models["tiny"], "--video", video, "--output", tmp_path / "o.mp4",
                     "--max-frames", "7", "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == 7
    assert len(read_video(tmp_path / "o.mp4")[0]) == 7


def test_damaged_video_skips_unreadable_frames_and_continues(tmp_path, models):
    video = write_video(tmp_path / "damaged.avi", synthetic_frames(30, HEIGHT, WIDTH), FPS)
    data = bytearray(video.read_bytes())
    start, end = int(len(data) * 0.45), int(len(data) * 0.55)  # a few frames in the middle
    data[start:end] = np.random.default_rng(1).integers(0, 256, end - start, np.uint8).tobytes()
    video.write_bytes(bytes(data))

    out = tmp_path / "o.mp4"
    result = run_cli("--model", models["tiny"], "--video", video, "--output", out,
                     "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["unreadable"] >= 1
    assert "skipped unreadable frame" in result.stderr
    assert summary["frames"] > 15  # it went on past the damage
    assert summary["frames"] + summary["unreadable"] <= 30
    assert len(read_video(out)[0]) == summary["frames"]


def test_benchmark_prints_percentiles(tmp_path, models, clip):
    video, _ = clip
    result = run_cli("--model", models["tiny"], "--video", video, "--benchmark", "--threads", "1",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    model = re.search(r"model only\s+p50\s+([\d.]+) ms\s+p95\s+([\d.]+) ms", result.stdout)
    total = re.search(r"end-to-end\s+p50\s+([\d.]+) ms\s+p95\s+([\d.]+) ms\s+throughput ([\d.]+) fps",
                      result.stdout)
    assert model and total, result.stdout
    assert 0 < float(model[1]) <= float(model[2])
    assert 0 < float(total[1]) <= float(total[2])
    assert float(total[3]) > 0
    assert list(tmp_path.iterdir()) == []  # --benchmark writes no default video


# ---------------------------------------------------------------------------------------------
# Images


def test_images_folder_writes_masks_and_overlays(tmp_path, models):
    folder = tmp_path / "in"
    folder.mkdir()
    images = {"a": synthetic_frames(3, 40, 56)[2], "b": synthetic_frames(8, 32, 72)[7]}
    for stem, image in images.items():
        assert cv2.imwrite(str(folder / f"{stem}.png"), image)
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("not an image")
    masks, overlays = tmp_path / "masks", tmp_path / "overlays"

    result = run_cli("--model", models["tiny"], "--images", folder, "--mask-dir", masks,
                     "--output", overlays, "--threads", "1", "--json")
    assert result.returncode == 7, result.stderr  # some images failed, the others are done
    summary = json.loads(result.stdout)
    assert (summary["frames"], summary["unreadable"], summary["failed"]) == (2, 1, 0)
    assert "broken.png" in result.stderr  # the error names the file
    assert sorted(p.name for p in masks.iterdir()) == ["a.png", "b.png"]
    assert sorted(p.name for p in overlays.iterdir()) == ["a_overlay.png", "b_overlay.png"]
    for stem, image in images.items():
        np.testing.assert_array_equal(read_mask(masks / f"{stem}.png"),
                                      python_labels(models["tiny"], [image])[0])
        assert cv2.imread(str(overlays / f"{stem}_overlay.png")).shape == image.shape


def test_single_image_default_overlay_in_cwd(tmp_path, models):
    image = tmp_path / "street.png"
    frame = synthetic_frames(1, 48, 64)[0]
    assert cv2.imwrite(str(image), frame)
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("--model", models["tiny"], "--image", image, "--threads", "1", "--quiet", cwd=work)
    assert result.returncode == 0, result.stderr
    overlay = cv2.imread(str(work / "street_overlay.png"))
    labels = python_labels(models["tiny"], [frame])[0]
    expected = (frame.astype(np.float32) + palette_bgr()[labels]) / 2
    assert np.abs(overlay - expected).max() <= 1  # PNG is lossless; rounding of the blend


# ---------------------------------------------------------------------------------------------
# Errors: exit code, exactly one line on stderr, nothing on stdout, no file left behind.

ERROR_CASES = [
    # (arguments, exit code, part of the message); {name} is a path filled in by the test.
    pytest.param("--video {clip} --model {tiny} --bogus", 2, "unknown option '--bogus'", id="unknown-option"),
    pytest.param("--video {clip} --model {tiny} --threads two", 2, "--threads expects a number", id="malformed-number"),
    pytest.param("--video {clip} --model {tiny} --alpha 1.5", 2, "--alpha must lie in [0, 1]", id="alpha-range"),
    pytest.param("--video {clip} --model {tiny} --codec vp9", 2, "--codec must be h264 or mp4v", id="codec"),
    pytest.param("--model {tiny} --video", 2, "--video needs a value", id="missing-value"),
    pytest.param("--model {tiny} --quiet", 2, "no input", id="no-input"),
    pytest.param("--model {tiny} --video {clip} --image x.png", 2, "exactly one of", id="two-inputs"),
    pytest.param("--quiet=yes --video {clip}", 2, "--quiet takes no value", id="flag-with-value"),
    pytest.param("--video {clip} --model {tiny} --device gpu", 2, "unknown device 'gpu'", id="bad-device"),
    pytest.param("--video {clip} --model {tiny} --fp16", 2, "half precision needs a CUDA device", id="fp16-on-cpu"),
    pytest.param("--video {clip} --model {missing} --output out.mp4", 3, "does not exist", id="missing-model"),
    pytest.param("--video {clip} --model {garbage} --output out.mp4", 3, "not a TorchScript archive", id="corrupt-model"),
    pytest.param("--video {clip} --model {no_metadata} --output out.mp4", 3, "without metadata.json", id="no-metadata"),
    pytest.param("--video {clip} --model {future} --output out.mp4", 3, "format_version 2", id="newer-format"),
    pytest.param("--video {missing_video} --model {tiny} --output out.mp4", 4, "does not exist", id="missing-input"),
    pytest.param("--video {text_video} --model {tiny} --output out.mp4", 4, "video", id="corrupt-input"),
    pytest.param("--images {empty_dir} --model {tiny} --output out", 4, "no image files", id="empty-folder"),
    pytest.param("--video {clip} --model {tiny} --output /nonexistent/dir/out.mp4", 5, "cannot write video", id="output-unwritable"),
    pytest.param("--video {clip} --model {tiny} --output out.mp4 --mask-dir blocker/masks", 5, "cannot create mask folder", id="mask-dir-unwritable"),
    pytest.param("--video {clip} --model {tiny} --output out.mp4 --device cuda", 6, "CUDA is not available", id="no-cuda"),
]


@pytest.mark.parametrize("args, code, message", ERROR_CASES)
def test_errors(tmp_path, models, clip, args, code, message):
    if code == 6:
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here, so --device cuda is not an error")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "empty").mkdir()
    (inputs / "text.mp4").write_text("not a video\n" * 100)
    work = tmp_path / "work"
    work.mkdir()
    (work / "blocker").write_text("a file where a folder is wanted")
    paths = {name: str(path) for name, path in models.items()}
    paths.update(clip=str(clip[0]), missing_video=str(inputs / "missing.avi"),
                 text_video=str(inputs / "text.mp4"), empty_dir=str(inputs / "empty"))

    result = run_cli("--threads", "1", *[part.format(**paths) for part in args.split()], cwd=work)
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ema_seg: error: ")
    assert message in lines[0]
    assert result.stdout == ""
    assert [p.name for p in work.iterdir()] == ["blocker"]  # no output file left behind


@pytest.mark.parametrize("args, message", [
    # Values that make no sense are refused, none silently replaced by a default.
    (["--video", ""], "--video expects a file or URL, got an empty string"),
    (["--images", ""], "--images expects a folder or a pattern, got an empty string"),
    (["--image", ""], "--image expects an image file, got an empty string"),
    (["--video", "{clip}", "--model", ""], "--model expects a model file, got an empty string"),
    (["--video", "{clip}", "--output", ""], "--output expects a file or folder name, got an empty string"),
    (["--video", "{clip}", "--mask-dir", ""], "--mask-dir expects a folder name, got an empty string"),
    (["--video", "{clip}", "--device", ""], "--device expects cpu, cuda or cuda:N, got an empty string"),
    (["--video", "{clip}", "--codec", ""], "--codec must be h264 or mp4v, got ''"),
    (["--video", "{clip}", "--threads", "0"], "--threads must lie in 1.."),
    (["--video", "{clip}", "--threads", "-2"], "--threads must lie in 1.."),
    (["--video", "{clip}", "--max-frames", "-1"], "--max-frames must be >= 1, got -1"),
    (["--video", "{clip}", "--max-frames", "0"], "--max-frames must be >= 1, got 0"),
    (["--video", "{clip}", "--every", "-3"], "--every must be >= 1, got -3"),
    (["--video", "{clip}", "--alpha", "nan"], "--alpha must lie in [0, 1], got nan"),
    (["--video", "{clip}", "--alpha", "-0.5"], "--alpha must lie in [0, 1], got -0.5"),
    (["--video", "{clip}", "--max-pixels", "inf"], "--max-pixels expects megapixels >= 0"),
    (["--video", "{clip}", "--every", "99999999999"], "--every expects a number, got '99999999999'"),
    (["--camera", "-1"], "--camera expects an index >= 0, got -1"),
    (["--camera", "1.5"], "--camera expects a number, got '1.5'"),
    (["--video", "{clip}", "--model", "a.pt", "--model", "b.pt"], "--model is given more than once"),
    (["--video", "{clip}", "--bogus=3"], "unknown option '--bogus'"),
    (["--video", "{clip}", "extra"], "unexpected argument 'extra'"),
    (["--video", "{clip}", "--json=no"], "--json takes no value"),
])
def test_flag_values_that_make_no_sense_are_usage_errors(tmp_path, models, clip, args, message):
    filled = [a.format(clip=clip[0]) for a in args]
    result = run_cli("--threads", "1", *filled, cwd=tmp_path) if "--threads" not in args else run_cli(*filled, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ema_seg: error: ") and message in lines[0], result.stderr
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_help_lists_every_option_with_its_bound():
    text = run_cli("--help").stdout
    for flag in ("--video", "--sources", "--camera", "--image", "--images", "--model", "--device", "--fp16",
                 "--threads", "--max-pixels", "--optimize", "--output", "--output-dir", "--serve", "--serve-fps",
                 "--mask-dir", "--codec", "--alpha", "--show", "--max-frames", "--every", "--benchmark", "--json",
                 "--quiet", "--help", "--version"):
        assert flag in text, flag
    assert "1 to 4 x the hardware threads" in text and "overlay opacity in [0, 1]" in text
    groups = [text.index(g) for g in ("input (one kind):", "model:", "output:", "run:")]
    assert groups == sorted(groups)


def test_help_documents_exit_codes():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "exit codes: 0 ok, 1 runtime error, 2 usage error, 3 model error" in result.stdout
    assert "8 some streams failed" in result.stdout and "130 interrupted" in result.stdout


def test_version_names_the_build_and_its_torch():
    import importlib.metadata

    import emaseg

    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(r"ema_seg (\S+) \(LibTorch (\d+\.\d+)\.\d+, OpenCV (\d+)\.\d+\.\d+\)\n", result.stdout)
    assert match, result.stdout
    torch_version = importlib.metadata.version("torch")
    assert match.group(1) == emaseg.__version__
    assert match.group(2) == ".".join(torch_version.split(".")[:2])
    assert match.group(3) == "4"


# ---------------------------------------------------------------------------------------------
# Interruption and long runs


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_keeps_a_playable_partial_video(tmp_path, models, signum):
    total = 120
    video = write_video(tmp_path / "long.avi", synthetic_frames(total, HEIGHT, WIDTH), FPS)
    out, masks = tmp_path / "out.mp4", tmp_path / "masks"
    process = start_cli("--model", models["slow"], "--video", video, "--output", out,
                        "--mask-dir", masks, "--threads", "1", "--json")
    deadline = time.monotonic() + 60
    while not masks.is_dir() or len(list(masks.iterdir())) < 5:  # a few frames are done
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "no progress within 60 s"
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True and summary["partial"] is True
    assert 5 <= summary["frames"] < total
    # Not under the final name, where it would pass for a finished run, but beside it.
    partial = tmp_path / "out.partial.mp4"
    assert summary["output"] == str(partial)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.avi", "masks", "out.partial.mp4"]
    written, fps, size = read_video(partial)
    assert len(written) == summary["frames"]  # every frame done so far, in a playable file
    assert size == (WIDTH, HEIGHT)
    assert fps == pytest.approx(FPS, abs=1e-3)
    assert len(list(masks.iterdir())) == summary["frames"]


def test_long_run_memory_stays_flat(tmp_path, models):
    # 4,000 frames of 64x96: leaking one frame per iteration would add ~50 MB after the
    # baseline, far beyond the 5% (~10 MB) allowed, so the check can fail.
    total = 4000
    video = write_video(tmp_path / "long.avi", synthetic_frames(total, 64, 96), 30.0)
    masks = tmp_path / "masks"
    process = start_cli("--model", models["tiny"], "--video", video, "--output", tmp_path / "o.mp4",
                        "--mask-dir", masks, "--threads", "1", "--quiet", "--json")
    # The summary appears when the video is finished; what follows is process teardown, whose
    # page faults in LibTorch's code (+3 MB of file-backed RSS) say nothing about the run.
    finished = []  # (time of the summary's first line, whole stdout)

    def read_summary():
        first = process.stdout.readline()
        finished.append((time.monotonic(), first + process.stdout.read()))

    reader = threading.Thread(target=read_summary)
    reader.start()
    # Warm-up (loading LibTorch, first allocations, encoder buffers) is over once a quarter of
    # the frames are done; their masks tell how far the run is. The window ends with the last
    # frame: finishing the video (the index moved before the media, the playback check) is a
    # one-time cost of a few MB, not growth.
    warm = masks / f"frame_{total // 4:06d}.png"
    last = masks / f"frame_{total - 1:06d}.png"
    steady = []  # VmRSS in kB after warm-up, until the last frame
    while not finished and process.poll() is None:
        rss = rss_kb(process.pid)
        if rss and warm.exists() and not last.exists() and not finished:
            steady.append(rss)
        time.sleep(0.01)
    reader.join(timeout=60)
    assert process.wait(timeout=60) == 0, process.stderr.read()
    assert json.loads(finished[0][1])["frames"] == total

    assert len(steady) >= 20, f"only {len(steady)} samples: the run is too short to judge"
    assert max(steady) <= 1.05 * steady[0], (steady[0], max(steady))


def test_names_from_the_user_reach_the_terminal_escaped(tmp_path, models, clip):
    """A crafted file name (ESC sequences: set the terminal's title, clear the screen) is shown as
    visible escapes in errors, notes and the summary, and as \\u escapes in --json."""
    crafted = "\x1b]0;pwned\x07\x1b[2J\u009b"
    missing = run_cli("--model", models["tiny"], "--video", tmp_path / f"{crafted}.avi", "--threads", "1")
    assert missing.returncode == 4, missing.stderr
    assert "\x1b" not in missing.stderr and "\x07" not in missing.stderr and "\u009b" not in missing.stderr
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b" in missing.stderr
    video = tmp_path / f"{crafted}.avi"
    shutil.copy(clip[0], video)
    done = run_cli("--model", models["tiny"], "--video", video, "--output", tmp_path / f"{crafted}.mp4", "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr and "\\x1b]0;pwned" in done.stderr  # the summary names the output
    report = run_cli("--model", models["tiny"], "--video", video, "--threads", "1", "--json", cwd=tmp_path)
    assert report.returncode == 0 and "\x1b" not in report.stdout and "\u009b" not in report.stdout
    assert json.loads(report.stdout)["input"] == str(video)


@pytest.mark.parametrize("flag", ["--video", "--image", "--images"])
def test_os_errors_on_an_input_path_are_input_errors(tmp_path, models, flag):
    """A symlink loop or a name too long: exit 4 with the OS's reason, as for a missing input."""
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    for path, reason in ((tmp_path / "loop_a", "Too many levels of symbolic links"),
                         (tmp_path / ("n" * 300 + ".mp4"), "File name too long")):
        result = run_cli("--model", models["tiny"], flag, path, "--threads", "1", cwd=tmp_path)
        assert result.returncode == 4, result.stderr
        assert result.stderr.startswith("ema_seg: error: cannot open ") and reason in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1
