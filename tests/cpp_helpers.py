"""Helpers for tests of the C++ runtime: find the CLI, make models and videos, run and read them."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from child_signals import default_sigint

REPO = Path(__file__).resolve().parents[1]
# The tests run the installed command: `ema_seg` beside this interpreter, which pip put there
# (it runs the binary installed in site-packages/emaseg/bin). EMASEG_CLI overrides, for example
# with build/ema_seg for a developer's tree.
CLI = Path(os.environ.get("EMASEG_CLI", Path(sys.executable).parent / "ema_seg"))
BUILD_HINT = "bash scripts/setup.sh (it pip-installs emaseg, which installs ema_seg)"

# Colours (BGR) the tiny test model tells apart: background, red, green, blue.
GREY, RED, GREEN, BLUE = (90, 90, 90), (40, 40, 230), (40, 200, 40), (230, 60, 40)


def require_cli() -> Path:
    """The CLI binary, or skip the calling test with the command that builds it."""
    if not CLI.is_file():
        from conftest import missing

        missing(f"{CLI} is not built; run: {BUILD_HINT}")
    return CLI


def load_make_test_model():
    """cpp/tests/make_test_model.py as a module (it writes the tiny contract model)."""
    path = REPO / "cpp" / "tests" / "make_test_model.py"
    spec = importlib.util.spec_from_file_location("make_test_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_test_models(root: Path, **variants: dict) -> dict[str, Path]:
    """Contract models under `root`, one per keyword (its make_test_model options), plus
    "missing", a path where no file is."""
    make = load_make_test_model().make_test_model
    models = {name: make(root / f"{name}.pt", **options) for name, options in variants.items()}
    return {**models, "missing": root / "missing.pt"}


def synthetic_frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """BGR frames with a moving block per class on grey: flat colours, so lossy codecs keep
    the classes, and every frame differs from its neighbours."""
    frames = []
    block_h, block_w = max(height // 4, 2), max(width // 5, 2)
    for i in range(count):
        frame = np.full((height, width, 3), GREY, np.uint8)
        for k, colour in enumerate((RED, GREEN, BLUE)):
            y = (k * block_h + i) % (height - block_h)
            x = (k * block_w + 3 * i) % (width - block_w)
            frame[y:y + block_h, x:x + block_w] = colour
        frames.append(frame)
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0, fourcc: str = "FFV1") -> Path:
    """Writes frames with cv2. FFV1 (in .avi) is lossless: the CLI and the test then decode
    identical pixels, so their labels can be compared exactly."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"cv2 cannot write {path} with {fourcc}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def ffmpeg() -> str:
    """apt's ffmpeg CLI (set-up installs it); missing: a skip, or a failure under CI=true."""
    path = shutil.which("ffmpeg")
    if path is None:
        from conftest import missing

        missing("apt's ffmpeg is not installed (apt-get install ffmpeg; scripts/setup.sh does it)")
    return path


def encode_video(path: Path, frames: list[np.ndarray], fps: float, *codec_args: str) -> Path:
    """Frames encoded by the ffmpeg CLI (piped as raw BGR), e.g. codec_args "-c:v", "libx264"."""
    height, width = frames[0].shape[:2]
    raw = b"".join(f.tobytes() for f in frames)
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
                    "-r", str(fps), "-i", "-", *codec_args, str(path)], input=raw, check=True)
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], float, tuple[int, int]]:
    """All decodable frames, the fps and (width, height) as cv2 reports them."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"cv2 cannot open {path}"
    fps = capture.get(cv2.CAP_PROP_FPS)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps, size


def python_labels(model_path: Path, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The model's labels for BGR frames, computed in Python with the same TorchScript file."""
    import torch

    module = torch.jit.load(str(model_path))
    with torch.inference_mode():
        return [module(torch.from_numpy(frame)[None])[0].numpy() for frame in frames]


def cli_env() -> dict[str, str]:
    # One OpenMP thread: spinning OpenMP workers collapse throughput on shared cores.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(*args: str | Path, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(require_cli()), *map(str, args)], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.Popen:
    """The CLI in the background, with SIGINT's default action whatever the suite inherited."""
    return subprocess.Popen([str(require_cli()), *map(str, args)], cwd=cwd, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)


def rss_kb(pid: int) -> int | None:
    """Resident memory of a running process (Linux), or None once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@contextlib.contextmanager
def small_disk(folder: Path, free_bytes: int) -> Iterator[Path]:
    """A real file system that fills up: a tmpfs mounted on `folder` (needs root), pre-filled
    so that about `free_bytes` remain. Outside CI a machine without root skips the test; in CI
    (CI=true, where the tests run as root) failing to mount is an error, not a skip."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs on {folder}: {mounted.stderr.strip()}")
        pytest.skip(f"a full-disk test needs root to mount a tmpfs: {mounted.stderr.strip()}")
    try:
        filler = folder / ".filler"
        filler.write_bytes(b"\0" * max(shutil.disk_usage(folder).free - free_bytes, 0))
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def leftovers(folder: Path) -> list[str]:
    """Temporary files the runtime left in `folder` (hidden names with .tmp in them)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name)
