"""Several streams in one ema_seg process: --video given more than once, --sources, --output-dir,
--serve. Every stream's overlay is written with a single output's guarantees; one missing or dead
stream is named and marked failed while the others go on (exit 8); a live stream served by apt's
ffmpeg on the loopback, killed and restarted mid-run, is reconnected and its frames flow again;
the live view serves /stats.json, MJPEG and a page that Chromium renders; Ctrl-C keeps partial
videos (exit 130). The bindings' process_streams is checked at the end.

MultiPipeline's scheduling, isolation and backoff are C++ tests (cpp/tests/multi_pipeline_test.cpp).
"""
from __future__ import annotations

import importlib.util
import json
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import import_runtime, missing
from cpp_helpers import encode_video, ffmpeg, make_test_models, read_video, run_cli, start_cli, synthetic_frames

pytestmark = pytest.mark.usefixtures("built_cli")

FPS = 25.0
HEIGHT, WIDTH = 96, 160
CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "run scripts/test.sh, or: apt-get install ffmpeg chromium && .venv/bin/python -m pip install playwright"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_test_models(tmp_path_factory.mktemp("models"), tiny={})["tiny"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Short H.264 files of different lengths and sizes, and a long MPEG-TS one for live serving."""
    root = tmp_path_factory.mktemp("clips")
    h264 = ("-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10")
    return {
        "a": encode_video(root / "a.mp4", synthetic_frames(20, HEIGHT, WIDTH), FPS, *h264),
        "b": encode_video(root / "b.mp4", synthetic_frames(12, HEIGHT, WIDTH), FPS, *h264),
        "c": encode_video(root / "c.mp4", synthetic_frames(16, 64, 128), FPS, *h264),
        "live": encode_video(root / "live.ts", synthetic_frames(250, HEIGHT, WIDTH), FPS, *h264, "-f", "mpegts"),
    }


def frame_count(path: Path) -> int:
    return len(read_video(path)[0])


# --- several files ---------------------------------------------------------------------------------------------------

def test_several_files_in_one_process_each_get_their_overlay(tmp_path, tiny, clips):
    out = tmp_path / "out"
    result = run_cli("--model", tiny, "--video", clips["a"], "--video", clips["b"], "--video", clips["c"],
                     "--output-dir", out, "--threads", "1", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    streams = {s["name"]: s for s in report["streams"]}
    assert list(streams) == ["a", "b", "c"]
    for name, frames in (("a", 20), ("b", 12), ("c", 16)):
        s = streams[name]
        assert (s["state"], s["frames"], s["dropped"], s["unreadable"], s["reconnects"]) == ("ended", frames, 0, 0, 0)
        assert s["fps"] > 0 and s["latency_ms"]["count"] == frames and not s["live"]
        assert s["output"] == str(out / f"{name}_overlay.mp4") and not s["partial"]
        assert frame_count(out / f"{name}_overlay.mp4") == frames
    # One frame per model call on the CPU; a model worker per stream, at most 2 per thread.
    assert report["frames"] == 48 and report["batch"] == 1 and report["model_workers"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["a_overlay.mp4", "b_overlay.mp4", "c_overlay.mp4"]


def test_a_missing_file_beside_good_ones_fails_alone(tmp_path, tiny, clips):
    out = tmp_path / "out"
    result = run_cli("--model", tiny, "--video", clips["a"], "--video", tmp_path / "gone.mp4", "--video", clips["b"],
                     "--output-dir", out, "--threads", "1", "--json", cwd=tmp_path)
    assert result.returncode == 8, result.stderr
    assert re.search(r"error: stream 'gone' \(.*gone.mp4\) failed: video '.*gone.mp4' does not exist", result.stderr)
    streams = {s["name"]: s for s in json.loads(result.stdout)["streams"]}
    assert streams["gone"]["state"] == "failed" and streams["gone"]["output"] is None
    assert "does not exist" in streams["gone"]["error"]
    assert streams["a"]["state"] == streams["b"]["state"] == "ended"
    assert frame_count(out / "a_overlay.mp4") == 20 and frame_count(out / "b_overlay.mp4") == 12
    assert sorted(p.name for p in out.iterdir()) == ["a_overlay.mp4", "b_overlay.mp4"]


def test_a_sources_file_names_streams_and_masks_go_to_a_folder_each(tmp_path, tiny, clips):
    (tmp_path / "cams").mkdir()
    sources = tmp_path / "cams" / "sources.txt"
    (tmp_path / "cams" / "a.mp4").symlink_to(clips["a"])
    sources.write_text(f"# the yard, then the gate\nyard={clips['b']}\n\n  a.mp4  \ngate = {clips['c']}\n")
    result = run_cli("--model", tiny, "--sources", sources, "--output-dir", tmp_path / "out", "--mask-dir",
                     tmp_path / "masks", "--threads", "1", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    streams = json.loads(result.stdout)["streams"]
    assert [s["name"] for s in streams] == ["yard", "a", "gate"]  # file order; a bare path is named by its stem
    assert streams[1]["input"] == str(tmp_path / "cams" / "a.mp4")  # relative to the sources file
    for name, frames in (("yard", 12), ("a", 20), ("gate", 16)):
        assert frame_count(tmp_path / "out" / f"{name}_overlay.mp4") == frames
        assert len(list((tmp_path / "masks" / name).glob("frame_*.png"))) == frames


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--video", "{a}", "--video", "{b}", "--output", "o.mp4"], 2, "for several streams use --output-dir"),
    (["--video", "{a}", "--video", "{b}", "--benchmark"], 2, "--benchmark measures one input"),
    (["--camera", "0", "--serve", "0"], 2, "--output-dir and --serve apply to --video and --sources"),
    (["--video", "{a}", "--serve-fps", "3"], 2, "--serve-fps applies to --serve only"),
    (["--video", "{a}", "--serve", "localhost:http"], 2, "--serve expects [HOST:]PORT"),
    (["--video", "{a}", "--serve-fps", "0", "--serve", "0"], 2, "--serve-fps must lie in (0, 60]"),
    (["--sources", "{bad_sources}"], 2, "line 2: the stream name 'my cam' may hold only"),
    (["--sources", "{no_sources}"], 4, "cannot read the sources file"),
    (["--video", "{a}", "--model-workers", "2"], 2, "--model-workers applies to several streams"),
], ids=["output", "benchmark", "camera", "serve-fps-alone", "serve-address", "serve-fps", "bad-name", "no-file",
        "workers"])
def test_stream_usage_errors(tmp_path, tiny, clips, args, code, message):
    (tmp_path / "bad.txt").write_text(f"{clips['a']}\nmy cam={clips['b']}\n")
    names = {**{k: str(v) for k, v in clips.items()}, "bad_sources": str(tmp_path / "bad.txt"),
             "no_sources": str(tmp_path / "none.txt")}
    result = run_cli("--model", tiny, *[a.format(**names) for a in args], cwd=tmp_path, timeout=60)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]


def test_a_port_in_use_is_a_clear_error_and_writes_nothing(tmp_path, tiny, clips):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run_cli("--model", tiny, "--video", clips["a"], "--serve", f"127.0.0.1:{port}", "--output-dir",
                         tmp_path / "out", cwd=tmp_path, timeout=60)
    assert result.returncode == 5, result.stderr
    assert f"--serve cannot listen on 127.0.0.1:{port}: the port is in use" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- live streams and the live view ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """apt's ffmpeg serving a file as an endless live MPEG-TS stream over HTTP on the loopback
    (-re: at its frame rate), one client at a time; kill() and start() again to drop it."""

    def __init__(self, clip: Path) -> None:
        self.clip, self.port, self.process = clip, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}/live.ts"
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([ffmpeg(), "-v", "error", "-re", "-stream_loop", "-1", "-i", str(self.clip),
                                         "-c", "copy", "-f", "mpegts", "-listen", "1", self.url],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def live_server(clips) -> Iterator[LiveServer]:
    server = LiveServer(clips["live"])
    yield server
    server.kill()


class Cli:
    """ema_seg in the background with --serve 0: its stderr is read on a thread, so the live
    view's address (printed on stderr) is known and the pipe never fills."""

    def __init__(self, *args, cwd: Path) -> None:
        self.process = start_cli(*args, "--serve", "0", cwd=cwd)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.base = self._wait_for(r"live view at (http://\S+/)").group(1)

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def _wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if m := re.search(pattern, line):
                    return m
            assert self.process.poll() is None, "".join(self.lines)
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} on stderr: {''.join(self.lines)}")

    def get(self, path: str, timeout: float = 10) -> bytes:
        with urllib.request.urlopen(self.base + path, timeout=timeout) as response:
            return response.read()

    def stats(self) -> dict:
        return {s["name"]: s for s in json.loads(self.get("stats.json"))["streams"]}

    def wait_until(self, ready: Callable[[dict], bool], what: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.stats()
            if ready(stats):
                return stats
            time.sleep(0.1)
        raise AssertionError(f"not {what} after {timeout} s: {stats}")

    def interrupt(self) -> tuple[int, dict, str]:
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=60)
        self.reader.join(timeout=10)
        return self.process.returncode, json.loads(out), "".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def cli_runs() -> Iterator[Callable[..., Cli]]:
    runs: list[Cli] = []

    def start(*args, cwd: Path) -> Cli:
        runs.append(Cli(*args, cwd=cwd))
        return runs[-1]

    yield start
    for run in runs:
        run.kill()


def mjpeg_frame(cli: Cli, name: str) -> np.ndarray:
    """The first JPEG part of /streams/<name>.mjpg, decoded."""
    with urllib.request.urlopen(f"{cli.base}streams/{name}.mjpg", timeout=20) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace; boundary=")
        boundary = response.headers["Content-Type"].split("boundary=")[1].encode()
        assert response.readline().strip() == b"--" + boundary
        headers = {}
        while (line := response.readline().strip()):
            key, value = line.decode().split(":", 1)
            headers[key.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        data = response.read(int(headers["content-length"]))
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


def test_a_live_stream_killed_and_restarted_reconnects_and_the_view_serves_it(tmp_path, tiny, clips, live_server,
                                                                            cli_runs):
    out = tmp_path / "out"
    cli = cli_runs("--model", tiny, "--video", live_server.url, "--video", clips["a"], "--output-dir", out,
                   "--threads", "1", "--stall-timeout", "3", "--json", cwd=tmp_path)
    stats = cli.wait_until(lambda s: s["live"]["frames"] >= 10 and s["a"]["state"] == "ended", "flowing")
    assert stats["live"]["state"] == "running" and stats["live"]["live"]
    # The file stream ended on its own beside the live one: its overlay is complete already.
    assert frame_count(out / "a_overlay.mp4") == 20

    # The live view while the run goes on: an MJPEG frame of the overlay, the newest JPEG.
    assert mjpeg_frame(cli, "live").shape == (HEIGHT, WIDTH, 3)
    jpeg = cv2.imdecode(np.frombuffer(cli.get("streams/live.jpg"), np.uint8), cv2.IMREAD_COLOR)
    assert jpeg.shape == (HEIGHT, WIDTH, 3)
    with pytest.raises(urllib.error.HTTPError) as unknown:
        cli.get("streams/nobody.mjpg")
    assert unknown.value.code == 404

    live_server.kill()  # the camera drops off the network
    stats = cli.wait_until(lambda s: s["live"]["state"] == "reconnecting", "reconnecting")
    before = stats["live"]["frames"]
    assert cli._wait_for(r"warning: stream 'live': reconnecting in \d+\.\d s")
    live_server.start()  # and comes back
    stats = cli.wait_until(lambda s: s["live"]["reconnects"] == 1 and s["live"]["frames"] >= before + 10,
                           "reconnected with frames flowing")
    assert stats["live"]["state"] == "running"

    code, report, stderr = cli.interrupt()  # Ctrl-C ends every stream cleanly
    assert code == 130, stderr
    live = {s["name"]: s for s in report["streams"]}["live"]
    assert live["reconnects"] == 1 and live["partial"] and report["interrupted"]
    partial = out / "live_overlay.partial.mp4"
    assert live["output"] == str(partial)
    assert frame_count(partial) == live["frames"]
    assert sorted(p.name for p in out.iterdir()) == ["a_overlay.mp4", "live_overlay.partial.mp4"]
    assert "Traceback" not in stderr


def test_the_live_view_page_renders_every_stream_in_chromium(tmp_path, tiny, clips, live_server, cli_runs):
    if not CHROMIUM.is_file():
        missing(f"{CHROMIUM} is not installed; {INSTALL}")
    if importlib.util.find_spec("playwright") is None:
        missing(f"the playwright module is not installed; {INSTALL}")
    from playwright.sync_api import sync_playwright

    cli = cli_runs("--model", tiny, "--video", live_server.url, "--video", clips["b"], "--video",
                   tmp_path / "gone.mp4", "--output-dir", tmp_path / "out", "--threads", "1", "--json", cwd=tmp_path)
    cli.wait_until(lambda s: s["live"]["frames"] >= 5 and s["b"]["state"] == "ended", "flowing")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), timeout=60_000, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(cli.base, timeout=60_000)
            try:
                # Every stream that produced a frame shows it, the ended file's too.
                sizes = page.wait_for_function(
                    "(() => { const s = ['live', 'b'].map(n => { const i = document.getElementById('img-' + n);"
                    " return [i.naturalWidth, i.naturalHeight]; }); return s.every(x => x[0] > 0) ? s : null; })()",
                    timeout=60_000).json_value()
                page.wait_for_function("document.getElementById('stats-gone').textContent.startsWith('failed')",
                                       timeout=30_000)
            except Exception as e:  # say what the page showed and what ema_seg said
                raise AssertionError(f"{e}\npage: {page.inner_text('body')}\nstderr: {''.join(cli.lines)}") from None
            texts = {n: page.inner_text(f"#stats-{n}") for n in ("live", "b", "gone")}
        finally:
            browser.close()
    assert sizes == [[WIDTH, HEIGHT], [WIDTH, HEIGHT]]
    assert texts["live"].startswith("running") and "frames" in texts["live"], (texts, "".join(cli.lines))
    assert texts["b"].startswith("ended \u00b7 12 frames"), texts
    assert "does not exist" in texts["gone"], texts
    code, report, stderr = cli.interrupt()
    assert code == 130, stderr


def test_the_live_view_works_for_one_stream_too(tmp_path, tiny, live_server, cli_runs):
    cli = cli_runs("--model", tiny, "--video", live_server.url, "--threads", "1", "--json", cwd=tmp_path)
    stats = cli.wait_until(lambda s: s["live"]["frames"] >= 5, "flowing")
    assert list(stats) == ["live"] and stats["live"]["state"] == "running"
    assert mjpeg_frame(cli, "live").shape == (HEIGHT, WIDTH, 3)
    code, report, stderr = cli.interrupt()
    assert code == 130, stderr
    # Without --output-dir the overlay goes to the current folder, as a single --video's does.
    assert report["streams"][0]["output"] == "live_overlay.partial.mp4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live_overlay.partial.mp4"]


# --- the bindings ----------------------------------------------------------------------------------------------------

def test_process_streams_calls_back_per_stream_and_reports_each(tmp_path, tiny, clips):
    runtime = import_runtime()
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()

    def on_frame(name: str, index: int, frame: np.ndarray, labels: np.ndarray) -> None:
        assert frame.shape[:2] == labels.shape
        with lock:
            seen.setdefault(name, []).append(index)

    stats = runtime.process_streams({"first": clips["a"], "second": clips["c"], "none": tmp_path / "gone.mp4"},
                                    on_frame, model=tiny, threads=1)
    assert seen == {"first": list(range(20)), "second": list(range(16))}
    by_name = {s["name"]: s for s in stats}
    assert (by_name["first"]["state"], by_name["first"]["frames"]) == ("ended", 20)
    assert by_name["none"]["state"] == "failed" and "does not exist" in by_name["none"]["error"]
    # Three model workers (the model loaded three times): the same frames and labels, in order.
    labels_of: dict[tuple[str, int], np.ndarray] = {}

    def keep(name: str, index: int, frame: np.ndarray, labels: np.ndarray) -> None:
        with lock:
            labels_of[(name, index)] = labels

    runtime.process_streams({"first": clips["a"], "second": clips["c"]}, keep, model=tiny, threads=1, workers=1)
    one_worker = dict(labels_of)
    labels_of.clear()
    runtime.process_streams({"first": clips["a"], "second": clips["c"]}, keep, model=tiny, threads=1, workers=3)
    assert one_worker.keys() == labels_of.keys() and all(np.array_equal(one_worker[k], labels_of[k]) for k in one_worker)
    with pytest.raises(runtime.Error, match="workers applies to a model path"):
        runtime.process_streams([clips["a"]], model=runtime.Segmenter(str(tiny)), workers=2)
    # A list of inputs is named after their stems; max_frames applies to each.
    assert [s["name"] for s in runtime.process_streams([clips["a"], clips["a"]], model=tiny, max_frames=3)] == ["a", "a_2"]

    def raises(name: str, index: int, frame: np.ndarray, labels: np.ndarray) -> None:
        raise ValueError("from on_frame")

    with pytest.raises(ValueError, match="from on_frame"):
        runtime.process_streams([clips["a"], clips["b"]], raises, model=tiny)
    with pytest.raises(TypeError, match="sources must be"):
        runtime.process_streams(str(clips["a"]), model=tiny)
