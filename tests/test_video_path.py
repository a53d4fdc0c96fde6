"""The FFmpeg-native video path at the CLI: streams that stall or vanish end the run with a clear
input error (exit 4) after --stall-timeout, never a hang, keeping the frames before as a partial
video; Ctrl-C ends a blocking open at once; --hwaccel's fallback and errors; --preset and --crf
reach libx264; --json times every stage.

Streams are served on the loopback by small Python servers that misbehave on purpose. The inputs
are H.264 files made by apt's ffmpeg (set-up installs it). The decoded frames' byte identity with
cv::VideoCapture and the YUV overlay's colour bound are C++ tests (cpp/tests/video_test.cpp).
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpp_helpers import encode_video, ffmpeg, make_test_models, read_video, run_cli, start_cli, synthetic_frames

FPS = 25.0
HEIGHT, WIDTH = 96, 160

pytestmark = pytest.mark.usefixtures("built_cli")


def encode(path: Path, frames: int, *codec_args: str) -> Path:
    """Synthetic frames encoded by the ffmpeg CLI."""
    return encode_video(path, synthetic_frames(frames, HEIGHT, WIDTH), FPS, *codec_args)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_test_models(tmp_path_factory.mktemp("models"), tiny={})["tiny"]


@pytest.fixture(scope="module")
def h264(tmp_path_factory) -> Path:
    return encode(tmp_path_factory.mktemp("h264") / "clip.mp4", 30, "-c:v", "libx264", "-pix_fmt", "yuv420p")


class Server:
    """A TCP server on the loopback that answers each connection with `reply(conn)` on a
    thread; stopped (and every connection closed) when the test ends."""

    def __init__(self, reply) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.connections: list[socket.socket] = []
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            self.reply(conn, self.done)
        except OSError:
            pass

    def url(self, name: str = "live.ts") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.done.set()
        for conn in self.connections:
            conn.close()
        self.sock.close()


@pytest.fixture
def serve() -> Iterator:
    servers: list[Server] = []

    def start(reply) -> Server:
        servers.append(Server(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def silent(conn: socket.socket, done: threading.Event) -> None:
    """Accepts, reads the request, never answers: a camera that hangs."""
    conn.recv(4096)
    done.wait(120)


def stalls_after(data: bytes):
    """Answers with the first bytes of a live MPEG-TS stream, then sends nothing more. Opening
    the stream reads about 1.2 s of it (libavformat's probing): send more than that."""
    def reply(conn: socket.socket, done: threading.Event) -> None:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp2t\r\n\r\n" + data)
        done.wait(120)
    return reply


def test_a_stream_that_never_answers_is_an_input_error_after_the_stall_timeout(tmp_path, tiny, serve):
    server = serve(silent)
    started = time.monotonic()
    result = run_cli("--model", tiny, "--video", server.url(), "--stall-timeout", "1", "--threads", "1",
                     cwd=tmp_path, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 4, result.stderr
    assert "gave no data for 1 s while opening (--stall-timeout)" in result.stderr
    assert elapsed < 20, f"took {elapsed:.1f} s"  # 1 s of silence, not FFmpeg's own minutes
    assert list(tmp_path.iterdir()) == []  # nothing created before the input opened


def test_a_stream_that_stalls_mid_run_keeps_the_frames_before(tmp_path, tiny, serve):
    stream = encode(tmp_path / "source.ts", 100, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "5", "-f", "mpegts")
    data = stream.read_bytes()
    server = serve(stalls_after(data[: len(data) * 3 // 5]))
    out = tmp_path / "out.mp4"
    result = run_cli("--model", tiny, "--video", server.url(), "--output", out, "--stall-timeout", "1",
                     "--threads", "1", timeout=60)
    assert result.returncode == 4, result.stderr
    assert f"stream '{server.url()}' stalled: no data for 1 s (--stall-timeout)" in result.stderr
    partial = tmp_path / "out.partial.mp4"
    assert f"the frames before are in {partial}" in result.stderr
    assert not out.exists()  # never a final name for an unfinished run
    frames, _, size = read_video(partial)
    # A live stream keeps only its newest frame when the model is behind, and 60 frames arrive at
    # once: how many are left depends on the model's speed.
    assert len(frames) >= 1 and size == (WIDTH, HEIGHT)


def test_ctrl_c_ends_a_blocking_open_at_once(tmp_path, tiny, serve):
    server = serve(silent)
    process = start_cli("--model", tiny, "--video", server.url(), "--stall-timeout", "0", "--threads", "1",
                        cwd=tmp_path)
    time.sleep(1.5)  # connected, waiting for an answer that never comes (0: no stall limit)
    assert process.poll() is None, process.communicate()[1]
    sent = time.monotonic()
    process.send_signal(2)  # SIGINT
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert time.monotonic() - sent < 5
    assert "interrupted while opening" in stderr
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_ends_a_blocking_read_and_keeps_the_frames_before(tmp_path, tiny, serve):
    stream = encode(tmp_path / "source.ts", 100, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "5", "-f", "mpegts")
    data = stream.read_bytes()
    server = serve(stalls_after(data[: len(data) // 2]))
    out = tmp_path / "out.mp4"
    masks = tmp_path / "masks"  # one per frame done: shows the run got past the first frames
    process = start_cli("--model", tiny, "--video", server.url(), "--output", out, "--mask-dir", masks,
                        "--stall-timeout", "0", "--threads", "1", "--json")
    deadline = time.monotonic() + 30
    while not masks.is_dir() or not any(masks.iterdir()):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "no frame done within 30 s"
        time.sleep(0.05)
    time.sleep(1.5)  # the sent half is decoded; the reader now waits for bytes that never come
    process.send_signal(2)  # SIGINT
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] and summary["partial"]
    assert len(read_video(tmp_path / "out.partial.mp4")[0]) == summary["frames"] >= 1
    assert not out.exists()


def test_a_stream_that_breaks_off_is_an_input_error_that_keeps_the_frames_before(tmp_path, tiny, serve):
    """The server drops the connection mid-packet: a vanished stream, exit 4, nothing lost."""
    stream = encode(tmp_path / "source.ts", 100, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "5", "-f", "mpegts")
    data = stream.read_bytes()

    def closes(conn: socket.socket, done: threading.Event) -> None:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp2t\r\n\r\n" + data[: len(data) // 2])
        conn.close()

    server = serve(closes)
    result = run_cli("--model", tiny, "--video", server.url(), "--output", tmp_path / "o.mp4",
                     "--stall-timeout", "5", "--threads", "1", timeout=60)
    assert result.returncode == 4, result.stderr
    assert f"stream '{server.url()}' broke off: Input/output error" in result.stderr
    assert not (tmp_path / "o.mp4").exists()
    assert len(read_video(tmp_path / "o.partial.mp4")[0]) >= 1  # live: the newest frames, as the model keeps up


def gpu_present() -> bool:
    return shutil.which("nvidia-smi") is not None and subprocess.run(["nvidia-smi", "-L"],
                                                                     capture_output=True).returncode == 0


@pytest.mark.parametrize("hwaccel", ["cuda", "vaapi"])
def test_hwaccel_without_the_device_is_a_device_error(tmp_path, tiny, h264, hwaccel):
    if hwaccel == "cuda" and gpu_present():
        pytest.skip("this machine has an NVIDIA GPU: scripts/verify_cuda.sh checks NVDEC there")
    result = run_cli("--model", tiny, "--video", h264, "--hwaccel", hwaccel, "--benchmark", "--threads", "1",
                     cwd=tmp_path)
    assert result.returncode == 6, result.stderr
    assert f"--hwaccel {hwaccel}: no {hwaccel} device to decode on" in result.stderr
    assert "use --hwaccel none or auto" in result.stderr


def test_hwaccel_auto_decodes_in_software_on_the_cpu(tmp_path, tiny, h264):
    result = run_cli("--model", tiny, "--video", h264, "--hwaccel", "auto", "--output", tmp_path / "o.mp4",
                     "--json", "--threads", "1")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["decoder"] == "h264 (1 thread)" and summary["frames"] == 30


@pytest.mark.parametrize(("args", "message"), [
    (["--hwaccel", "nvdec"], "--hwaccel must be none, auto, cuda or vaapi, got 'nvdec'"),
    (["--preset", "fastest"], "--preset must be ultrafast, superfast, veryfast, faster, fast, medium, slow, "
                              "slower or veryslow, got 'fastest'"),
    (["--crf", "52"], "--crf must lie in 0..51, got 52"),
    (["--stall-timeout", "-1"], "--stall-timeout must lie in 0..1000000 seconds, got -1"),
])
def test_bad_video_options_are_usage_errors(tmp_path, tiny, h264, args, message):
    result = run_cli("--model", tiny, "--video", h264, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_hwaccel_is_for_video_input(tmp_path, tiny):
    image = tmp_path / "a.png"
    import cv2
    cv2.imwrite(str(image), synthetic_frames(1, HEIGHT, WIDTH)[0])
    result = run_cli("--model", tiny, "--image", image, "--hwaccel", "auto")
    assert result.returncode == 2 and "--hwaccel applies to --video and --sources only" in result.stderr


def test_preset_and_crf_reach_libx264(tmp_path, tiny, h264):
    """x264 writes its settings into the stream: the preset shows in subme (ultrafast 0,
    veryfast 2), the crf as itself."""
    runs = {"default": [], "crf16": ["--preset", "veryfast", "--crf", "16"], "crf40": ["--preset", "veryfast", "--crf", "40"]}
    for name, args in runs.items():
        result = run_cli("--model", tiny, "--video", h264, "--output", tmp_path / f"{name}.mp4", *args, "--threads", "1")
        assert result.returncode == 0, result.stderr
    settings = {name: (tmp_path / f"{name}.mp4").read_bytes() for name in runs}
    assert b"subme=0" in settings["default"] and b"crf=23.0" in settings["default"]
    for crf in (16, 40):
        assert b"subme=2" in settings[f"crf{crf}"] and f"crf={crf}.0".encode() in settings[f"crf{crf}"]
    assert len(settings["crf40"]) < len(settings["crf16"]) / 2


def test_json_times_every_stage(tmp_path, tiny, h264):
    result = run_cli("--model", tiny, "--video", h264, "--output", tmp_path / "o.mp4", "--json", "--threads", "1")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    stages = summary["stages_ms"]
    assert list(stages) == ["decode", "model", "overlay", "encode"]
    for name in ("decode", "overlay", "encode"):
        assert stages[name]["count"] == summary["frames"] == 30, name
        assert 0 < stages[name]["p50"] <= stages[name]["max"], name
    assert stages["model"] == summary["model_ms"]
    benchmark = run_cli("--model", tiny, "--video", h264, "--benchmark", "--threads", "1")
    assert benchmark.returncode == 0, benchmark.stderr
    assert "stages p50  decode" in benchmark.stdout and "encode 0.00 ms" in benchmark.stdout  # no video
