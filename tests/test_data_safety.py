"""A user's data is never lost or misreported, by the CLI (the installed `ema_seg`) and by
emaseg.runtime.process_video: outputs never overwrite inputs, appear only when complete, and
failures exit with an honest code and a message naming the file and the reason.

Full-disk cases run on a real tmpfs (root, as in CI); kill cases use SIGKILL.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cpp_helpers import (
    leftovers,
    make_test_models,
    python_labels,
    read_video,
    run_cli,
    small_disk,
    start_cli,
    synthetic_frames,
    write_video,
)

HEIGHT, WIDTH = 96, 160


pytestmark = pytest.mark.usefixtures("built_cli")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    # slower: tenths of a second per frame, so a second signal lands while frames are in flight.
    return make_test_models(tmp_path_factory.mktemp("models"), tiny={}, slow={"work": 400}, slower={"work": 4000},
                            fails_on_11={"fail_after": 10})


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.avi", synthetic_frames(30, HEIGHT, WIDTH))


@pytest.fixture(scope="module")
def noisy_clip(tmp_path_factory) -> Path:
    """Noise compresses badly: its overlay video needs far more room than a small disk has."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8) for _ in range(30)]
    return write_video(tmp_path_factory.mktemp("noisy") / "noisy.avi", frames)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def one_error_line(result, code: int) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ema_seg: error: "), result.stderr
    return lines[0]


def image_folder(folder: Path, stems=("a", "b")) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for i, stem in enumerate(stems):
        images[stem] = synthetic_frames(i + 3, 40 + 8 * i, 56)[-1]
        assert cv2.imwrite(str(folder / f"{stem}.png"), images[stem])
    return images


# ---------------------------------------------------------------------------------------------
# Inputs are never overwritten


@pytest.mark.parametrize("where", ["mask-dir", "output"])
def test_images_into_their_own_folder_refused_when_names_collide(tmp_path, models, where):
    folder = tmp_path / "shots"
    image_folder(folder)
    if where == "output":  # an input named like the overlay of another input
        assert cv2.imwrite(str(folder / "a_overlay.png"), synthetic_frames(1, 32, 32)[0])
    before = snapshot(folder)
    result = run_cli("--model", models["tiny"], "--images", folder, f"--{where}", folder, "--threads", "1")
    line = one_error_line(result, 5)
    assert "is an input image" in line
    assert snapshot(folder) == before  # not one byte changed, nothing added


def test_single_image_with_mask_dir_of_its_own_folder_refused(tmp_path, models):
    image_folder(tmp_path / "in", stems=("x",))
    before = snapshot(tmp_path / "in")
    result = run_cli("--model", models["tiny"], "--image", tmp_path / "in" / "x.png",
                     "--mask-dir", tmp_path / "in", "--output", tmp_path / "o.png", "--threads", "1")
    assert "is an input image" in one_error_line(result, 5)
    assert snapshot(tmp_path / "in") == before
    assert not (tmp_path / "o.png").exists()


def test_images_folder_as_overlay_folder_is_fine_when_names_cannot_collide(tmp_path, models):
    images = image_folder(tmp_path / "in")
    before = snapshot(tmp_path / "in")
    result = run_cli("--model", models["tiny"], "--images", tmp_path / "in", "--output",
                     tmp_path / "in", "--threads", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    after = snapshot(tmp_path / "in")
    assert sorted(after) == ["a.png", "a_overlay.png", "b.png", "b_overlay.png"]
    assert {k: after[k] for k in before} == before
    assert cv2.imread(str(tmp_path / "in" / "a_overlay.png")).shape == images["a"].shape


@pytest.mark.parametrize("spelling", ["file-url", "ffmpeg-file", "symlink", "hardlink"])
def test_video_output_that_is_the_input_is_refused(tmp_path, models, spelling):
    folder = tmp_path / "my videos"  # FFmpeg takes file: URLs literally, spaces and all
    folder.mkdir()
    video = write_video(folder / "in.avi", synthetic_frames(10, HEIGHT, WIDTH))
    original = video.read_bytes()
    output = video
    source = {"file-url": f"file://{video}", "ffmpeg-file": f"file:{video}"}.get(spelling, str(video))
    if spelling == "symlink":
        output = tmp_path / "link.avi"
        output.symlink_to(video)
    elif spelling == "hardlink":
        output = tmp_path / "hard.avi"
        os.link(video, output)
    result = run_cli("--model", models["tiny"], "--video", source, "--output", output, "--threads", "1")
    assert "is the input video" in one_error_line(result, 5)
    assert video.read_bytes() == original
    assert leftovers(folder) == [] and leftovers(tmp_path) == []


def test_process_video_refuses_the_input_by_url(tmp_path, models):
    from emaseg.runtime import Error, process_video

    video = write_video(tmp_path / "in.avi", synthetic_frames(10, HEIGHT, WIDTH))
    original = video.read_bytes()
    with pytest.raises(Error, match="is the input video") as caught:
        process_video(f"file://{video}", video, model=models["tiny"], threads=1)
    assert caught.value.kind == "output"
    assert video.read_bytes() == original


def test_images_with_one_stem_get_distinct_outputs(tmp_path, models):
    folder = tmp_path / "in"
    folder.mkdir()
    png, jpg = synthetic_frames(2, 40, 56)
    assert cv2.imwrite(str(folder / "shot.png"), png)
    assert cv2.imwrite(str(folder / "shot.jpg"), jpg)
    jpg = cv2.imread(str(folder / "shot.jpg"))  # what the CLI decodes (JPEG is lossy)
    result = run_cli("--model", models["tiny"], "--images", folder, "--mask-dir", tmp_path / "masks",
                     "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["shot_jpg.png", "shot_png.png"]
    assert "shares its stem" in result.stderr
    for name, image in (("shot_png.png", png), ("shot_jpg.png", jpg)):
        mask = cv2.imread(str(tmp_path / "masks" / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, python_labels(models["tiny"], [image])[0])


def test_image_takes_a_file_only(tmp_path, models):
    image_folder(tmp_path / "in")
    result = run_cli("--model", models["tiny"], "--image", tmp_path / "in", "--threads", "1", cwd=tmp_path)
    assert "--image takes one file" in one_error_line(result, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


# ---------------------------------------------------------------------------------------------
# A full disk is an error, and leaves nothing incomplete


def test_full_disk_video(tmp_path, models, noisy_clip):
    with small_disk(tmp_path / "disk", free_bytes=20_000) as disk:
        result = run_cli("--model", models["tiny"], "--video", noisy_clip, "--output", disk / "out.mp4",
                         "--threads", "1")
        line = one_error_line(result, 5)
        assert f"'{disk / 'out.mp4'}'" in line and "No space left on device" in line
        assert sorted(p.name for p in disk.iterdir()) == [".filler"]  # no video, no temp file


def test_full_disk_masks(tmp_path, models, clip):
    frames = read_video(clip)[0]
    with small_disk(tmp_path / "disk", free_bytes=6_000) as disk:
        result = run_cli("--model", models["tiny"], "--video", clip, "--mask-dir", disk / "masks",
                         "--threads", "1")
        line = one_error_line(result, 5)
        assert "No space left on device" in line and str(disk / "masks") in line
        masks = sorted((disk / "masks").iterdir())
        assert 0 < len(masks) < len(frames)  # it failed part-way, as the disk filled
        assert leftovers(disk / "masks") == []
        expected = python_labels(models["tiny"], frames)
        for mask in masks:  # every mask that exists is whole
            index = int(mask.stem.split("_")[1])
            np.testing.assert_array_equal(cv2.imread(str(mask), cv2.IMREAD_UNCHANGED), expected[index])


def test_full_disk_single_image(tmp_path, models):
    image_folder(tmp_path / "in", stems=("big",))
    big = np.random.default_rng(0).integers(0, 256, (200, 300, 3), np.uint8)  # noise: a large PNG
    assert cv2.imwrite(str(tmp_path / "in" / "big.png"), big)
    with small_disk(tmp_path / "disk", free_bytes=8_000) as disk:
        result = run_cli("--model", models["tiny"], "--image", tmp_path / "in" / "big.png",
                         "--output", disk / "big_overlay.png", "--threads", "1")
        assert "No space left on device" in one_error_line(result, 5)
        assert sorted(p.name for p in disk.iterdir()) == [".filler"]


def test_full_disk_process_video(tmp_path, models, noisy_clip):
    from emaseg.runtime import Error, process_video

    with small_disk(tmp_path / "disk", free_bytes=20_000) as disk:
        with pytest.raises(Error, match="No space left on device") as caught:
            process_video(noisy_clip, disk / "out.mp4", model=models["tiny"], threads=1)
        assert caught.value.kind == "output"
        assert sorted(p.name for p in disk.iterdir()) == [".filler"]


# ---------------------------------------------------------------------------------------------
# Kills, interrupts and failures mid-run


def wait_for_masks(process, masks: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while not masks.is_dir() or len(list(masks.iterdir())) < count:
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "no progress within 60 s"
        time.sleep(0.02)


def test_sigkill_leaves_nothing_under_the_final_name(tmp_path, models):
    video = write_video(tmp_path / "long.avi", synthetic_frames(120, HEIGHT, WIDTH))
    process = start_cli("--model", models["slow"], "--video", video, "--output", tmp_path / "out.mp4",
                        "--mask-dir", tmp_path / "masks", "--threads", "1")
    wait_for_masks(process, tmp_path / "masks", 5)
    process.kill()
    process.wait(timeout=30)
    assert not (tmp_path / "out.mp4").exists()
    assert not (tmp_path / "out.partial.mp4").exists()
    for mask in (tmp_path / "masks").iterdir():  # every mask under its name is whole
        assert mask.name.startswith(".") or cv2.imread(str(mask), cv2.IMREAD_UNCHANGED) is not None


def test_second_ctrl_c_quits_and_removes_the_temporary_video(tmp_path, models):
    video = write_video(tmp_path / "long.avi", synthetic_frames(60, HEIGHT, WIDTH))
    process = start_cli("--model", models["slower"], "--video", video, "--output", tmp_path / "out.mp4",
                        "--mask-dir", tmp_path / "masks", "--threads", "1")
    wait_for_masks(process, tmp_path / "masks", 2)
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGINT  # died of the second signal, at once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.avi", "masks"]


def test_model_failure_mid_run(tmp_path, models, clip):
    result = run_cli("--model", models["fails_on_11"], "--video", clip, "--output", tmp_path / "out.mp4",
                     "--threads", "1")
    line = one_error_line(result, 1)
    assert "injected failure: this test model fails after 10 calls" in line  # the model's words
    assert "TorchScript interpreter" not in line
    assert "no video was written" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_process_video_failures_leave_no_video(tmp_path, models, clip):
    from emaseg.runtime import Error, process_video

    with pytest.raises(Error, match="injected failure") as caught:
        process_video(clip, tmp_path / "out.mp4", model=models["fails_on_11"], threads=1)
    assert caught.value.kind == "runtime"
    assert list(tmp_path.iterdir()) == []

    class Stop(Exception):
        pass

    def fail_at_five(done, total):
        if done == 5:
            raise Stop()

    with pytest.raises(Stop):
        process_video(clip, tmp_path / "out.mp4", model=models["tiny"], threads=1, progress=fail_at_five)
    assert list(tmp_path.iterdir()) == []


def test_process_video_interrupt_keeps_a_partial_video(tmp_path, models, clip):
    from emaseg.runtime import process_video

    def interrupt_at_five(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process_video(clip, tmp_path / "out.mp4", model=models["tiny"], threads=1, progress=interrupt_at_five)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.partial.mp4"]
    assert len(read_video(tmp_path / "out.partial.mp4")[0]) == 5


def test_video_file_without_frame_count_is_read_as_a_file(tmp_path, models):
    frames = synthetic_frames(10, HEIGHT, WIDTH)
    raw = tmp_path / "raw.mjpeg"  # raw MJPEG: concatenated JPEGs, no container, no frame count
    raw.write_bytes(b"".join(cv2.imencode(".jpg", f)[1].tobytes() for f in frames))
    assert not cv2.VideoCapture(str(raw)).get(cv2.CAP_PROP_FRAME_COUNT) > 0
    result = run_cli("--model", models["slow"], "--video", raw, "--output", tmp_path / "o.mp4",
                     "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["frames"], summary["dropped"]) == (10, 0)
    assert len(read_video(tmp_path / "o.mp4")[0]) == 10


# ---------------------------------------------------------------------------------------------
# Bounds and per-file errors


@pytest.mark.parametrize("threads", ["100000", "1000"])
def test_threads_are_bounded(tmp_path, models, clip, threads):
    result = run_cli("--model", models["tiny"], "--video", clip, "--threads", threads, cwd=tmp_path)
    line = one_error_line(result, 2)
    assert f"--threads must lie in 1..{4 * os.cpu_count()}" in line
    assert list(tmp_path.iterdir()) == []


def test_bad_images_in_a_batch_are_named_and_the_batch_goes_on(tmp_path, models):
    images = image_folder(tmp_path / "in")
    assert cv2.imwrite(str(tmp_path / "in" / "tiny.png"), np.zeros((1, 1, 3), np.uint8))
    result = run_cli("--model", models["tiny"], "--images", tmp_path / "in", "--mask-dir", tmp_path / "masks",
                     "--threads", "1", "--json")
    assert result.returncode == 7, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["frames"], summary["failed"]) == (2, 1)
    errors = [line for line in result.stderr.splitlines() if line.startswith("ema_seg: error: ")]
    assert len(errors) == 1 and "tiny.png" in errors[0] and "at least 8x8" in errors[0]
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["a.png", "b.png"]
    for stem, image in images.items():
        mask = cv2.imread(str(tmp_path / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, python_labels(models["tiny"], [image])[0])


def test_pixel_limit(tmp_path, models):
    image_folder(tmp_path / "in")  # a: 40x56 = 2240 pixels, b: 48x56 = 2688
    result = run_cli("--model", models["tiny"], "--images", tmp_path / "in", "--mask-dir", tmp_path / "masks",
                     "--max-pixels", "0.0025", "--threads", "1")
    assert result.returncode == 7, result.stderr
    # Below 0.1 megapixels the counts are exact (one decimal printed this limit as "0.0 megapixels").
    assert "b.png" in result.stderr and "(2688 pixels), more than the limit of 2500 pixels" in result.stderr
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["a.png"]
    bad = run_cli("--model", models["tiny"], "--images", tmp_path / "in", "--max-pixels", "-1")
    assert "--max-pixels expects megapixels" in one_error_line(bad, 2)


def test_huge_image_is_refused_by_default(tmp_path, models):
    """9000 x 9000 pixels (a 265 KB PNG) took 7.3 GB before the limit."""
    image_folder(tmp_path / "in", stems=("small",))
    assert cv2.imwrite(str(tmp_path / "in" / "huge.png"), np.zeros((9000, 9000, 3), np.uint8))
    result = run_cli("--model", models["tiny"], "--images", tmp_path / "in", "--mask-dir", tmp_path / "masks",
                     "--threads", "1", "--json")
    assert result.returncode == 7, result.stderr
    assert "huge.png" in result.stderr and "81.0 megapixels" in result.stderr
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["small.png"]
    assert json.loads(result.stdout)["peak_rss_mb"] < 1500  # decoding it (243 MB) and no more


def test_segmenter_pixel_limit(models):
    from emaseg.runtime import Error, Segmenter

    segmenter = Segmenter(models["tiny"], threads=1, max_pixels=1000)
    assert segmenter.max_pixels == 1000
    assert segmenter.segment(np.zeros((20, 50, 3), np.uint8)).shape == (20, 50)  # exactly 1000
    with pytest.raises(Error, match="more than the limit") as caught:
        segmenter.segment(np.zeros((20, 51, 3), np.uint8))
    assert caught.value.kind == "argument"
