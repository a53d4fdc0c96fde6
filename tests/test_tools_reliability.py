"""The Python tools never lose or misreport a user's data (issue 11).

Every failure of export.py, convert_mmseg.py, evaluate.py, train.py, make_synthetic.py and
prepare_cityscapes.py on a user error is one line on stderr naming the path and the reason, with
an honest exit status (1 error, 2 bad flag, 130 interrupted), no traceback, nothing under the
final name and no temporary file left. Full disks are real (a 300 KB tmpfs) when running as root,
and always also injected: the atomic writer's open() is replaced by one that raises ENOSPC once
the process has written LIMIT bytes through it.
"""
from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import fake_data
from child_signals import default_sigint
from emaseg import build_model, get_config, save_checkpoint
from emaseg.atomic import WriteError, atomic_open, atomic_path, check_output, same_file, temp_prefix, write_atomic

ROOT = Path(__file__).resolve().parents[1]
TINY = "emanet_r18w8-d8_128x256_synthetic"
EXPORT = ROOT / "python" / "export.py"
EVALUATE = ROOT / "python" / "evaluate.py"
TRAIN = ROOT / "python" / "train.py"
CONVERT = ROOT / "scripts" / "convert_mmseg.py"
SYNTHETIC = ROOT / "scripts" / "make_synthetic.py"
PREPARE = ROOT / "scripts" / "prepare_cityscapes.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"

# Runs a tool with the atomic writer failing like a full disk after LIMIT bytes (all files of
# the process together); what was written before stays, as on a real disk.
INJECT_FULL_DISK = r"""
import errno, os, runpy, sys
import emaseg.atomic as atomic
limit = int(sys.argv[1])
written = [0]
real_open = open

class FullDisk:
    def __init__(self, f):
        self._f = f
    def write(self, data):
        view = memoryview(data.encode() if isinstance(data, str) else data).cast("B")
        room = max(limit - written[0], 0)
        if view.nbytes > room:
            self._f.write(view[:room])
            written[0] = limit
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written[0] += view.nbytes
        return self._f.write(data)
    def __getattr__(self, name):
        return getattr(self._f, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self._f.close()

def failing_open(file, mode="r", *args, **kwargs):
    f = real_open(file, mode, *args, **kwargs)
    return FullDisk(f) if "w" in mode else f

atomic.open = failing_open
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_tool(script: Path, *args, fail_after: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The tool in a fresh process; with `fail_after`, writes fail with ENOSPC after that many bytes."""
    prefix = [] if fail_after is None else ["-c", INJECT_FULL_DISK, str(fail_after)]
    return subprocess.run([sys.executable, *prefix, str(script), *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout, cwd=ROOT)


def assert_failed(result: subprocess.CompletedProcess, code: int, prefix: str, *fragments: str,
                  only_line: bool = True) -> str:
    """Exit status `code`, no traceback, and an error line `prefix...` holding every fragment
    (the only stderr line, or the last one for tools that draw progress bars)."""
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert lines, "no error message"
    if only_line:
        assert len(lines) == 1, result.stderr
    line = lines[-1]
    assert line.startswith(prefix), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of the atomic writer (".NAME.<random>.tmp[.ext]") anywhere under folder."""
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


def assert_nothing_written(path: Path, before: bytes | None = None) -> None:
    """Nothing under the final name (or the earlier file, byte for byte) and no temp file beside it."""
    if before is None:
        assert not path.exists(), f"{path} was left behind"
    else:
        assert path.read_bytes() == before, f"{path} was changed"
    assert not leftovers(path.parent), leftovers(path.parent)


def interrupt_when(cmd: list, ready, timeout: float = 120) -> subprocess.CompletedProcess:
    """Starts `cmd`, sends SIGINT once `ready()` is true, returns how it ended."""
    proc = subprocess.Popen([sys.executable, *map(str, cmd)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, preexec_fn=default_sigint)
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the tool ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_interrupted_children_get_sigint_even_where_the_suite_ignores_it(tmp_path):
    """As when the suite is started from a background job: SIGINT ignored in the test process."""
    script, ready = tmp_path / "wait.py", tmp_path / "ready"
    script.write_text("import pathlib, sys, time\npathlib.Path(sys.argv[1]).touch()\ntime.sleep(60)\n")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        done = interrupt_when([script, ready], ready.exists, timeout=30)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert done.returncode == -signal.SIGINT and "KeyboardInterrupt" in done.stderr, done.stderr


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = get_config(TINY)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(path, build_model(cfg), cfg)
    return path


@pytest.fixture(scope="module")
def mmseg_ckpt(tmp_path_factory) -> Path:
    """An mmsegmentation-style file (meta + state_dict; our module names equal mmseg's)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mmseg") / "mm.pth"
    torch.save({"meta": {}, "state_dict": build_model(get_config(TINY)).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return fake_data.cityscapes_tree(tmp_path_factory.mktemp("data"), train=4, val=2)


class Disk:
    """A folder whose file system fills up: a real small tmpfs, or injected (`fail_after`)."""

    def __init__(self, folder: Path, fail_after: int | None) -> None:
        self.folder, self.fail_after = folder, fail_after

    def fill(self) -> None:
        """Takes every byte that is left (tmpfs only; the injected disk is full by `fail_after`)."""
        if self.fail_after is not None:
            return
        with open(self.folder / "filler", "wb", buffering=0) as f:  # unbuffered: close cannot fail
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC


def mount_tmpfs(folder: Path, size: str = "300k"):
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)


def unmount(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture(params=["tmpfs", "injected"])
def full_disk(request, tmp_path):
    """A folder on a 300 KB tmpfs (root only), or a normal folder with ENOSPC injected after 64 KB."""
    folder = tmp_path / "disk"
    if request.param == "tmpfs":
        if not IS_ROOT:
            pytest.skip("mounting a tmpfs needs root; the injected full disk still runs")
        mount_tmpfs(folder)
        try:
            yield Disk(folder, None)
        finally:
            unmount(folder)
    else:
        folder.mkdir()
        yield Disk(folder, 64 * 1024)


# ----------------------------------------------------------------------------- the helper

def test_atomic_write_gives_usual_mode_and_replaces_whole_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    old_umask = os.umask(0o022)
    os.umask(old_umask)
    write_atomic(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~old_umask  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit, RuntimeError, OSError])
def test_atomic_failure_keeps_old_file_and_removes_temp(tmp_path, error):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(WriteError if error is OSError else error):
        with atomic_open(target, "w") as f:
            f.write("half of the new")
            assert Path(f.name).name.startswith(temp_prefix(target))
            raise error(errno.EIO, "boom") if error is OSError else error()
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_path_keeps_extension_and_reports_os_reason(tmp_path):
    with atomic_path(tmp_path / "v.mp4", suffix=".mp4") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".v.mp4.") and tmp.suffix == ".mp4"
        tmp.write_bytes(b"x")
    assert (tmp_path / "v.mp4").read_bytes() == b"x"
    with pytest.raises(WriteError) as caught:
        write_atomic(tmp_path / "missing" / "a.txt", "x")
    assert str(caught.value).startswith(f"cannot write {tmp_path / 'missing' / 'a.txt'}: ")
    assert caught.value.errno == errno.ENOENT


def test_check_output_refuses_inputs_in_any_spelling(tmp_path, monkeypatch):
    src = tmp_path / "in.pth"
    src.write_bytes(b"weights")
    (tmp_path / "link.pth").symlink_to(src)
    os.link(src, tmp_path / "hard.pth")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for spelling in (src, "../in.pth", tmp_path / "link.pth", tmp_path / "hard.pth", tmp_path / "sub" / ".." / "in.pth"):
        with pytest.raises(WriteError, match="is the input file"):
            check_output(spelling, inputs=[src])
        assert same_file(spelling, src)
    check_output(tmp_path / "other.pth", inputs=[src, None])  # fine: another name
    check_output(tmp_path / "x.pth", inputs=[tmp_path / "x.pth"])  # an input that does not exist
    with pytest.raises(WriteError, match="it is a folder"):
        check_output(tmp_path / "sub")
    with pytest.raises(WriteError, match="is not a folder"):
        check_output(src / "x.pt")
    assert src.read_bytes() == b"weights"


def test_no_other_temp_file_scheme_in_the_tools():
    """One atomic writer: no tool or library module makes its own temp files or renames."""
    sources = [*(ROOT / "python").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]
    own = {"atomic.py", "runtime.py", "inference.py", "module.py", "benchmark.py"}
    offenders = [str(p.relative_to(ROOT)) for p in sources if p.name not in own
                 and any(s in p.read_text() for s in ("mkstemp", "os.replace(", ".replace(path)", '+ ".tmp"', '".part"'))]
    assert not offenders, offenders


# ----------------------------------------------------------------------------- export.py

def test_export_full_disk(tiny_ckpt, full_disk):
    out = full_disk.folder / "m.pt"  # the model is ~1.1 MB: larger than either disk
    result = run_tool(EXPORT, "--checkpoint", tiny_ckpt, "--output", out, fail_after=full_disk.fail_after)
    assert_failed(result, 1, "export: error:", f"cannot write {out}", NO_SPACE)
    assert_nothing_written(out)


def test_export_full_disk_keeps_the_previous_file(tiny_ckpt, tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"the previous export")
    result = run_tool(EXPORT, "--checkpoint", tiny_ckpt, "--output", out, fail_after=100_000)
    assert_failed(result, 1, "export: error:", f"cannot write {out}", NO_SPACE)
    assert_nothing_written(out, before=b"the previous export")


@pytest.mark.parametrize("spelling", ["same", "symlink", "hardlink"])
def test_export_refuses_to_overwrite_its_checkpoint(tiny_ckpt, tmp_path, spelling):
    ckpt = tmp_path / "c.pth"
    ckpt.write_bytes(tiny_ckpt.read_bytes())
    out = {"same": ckpt, "symlink": tmp_path / "link.pt", "hardlink": tmp_path / "hard.pt"}[spelling]
    if spelling == "symlink":
        out.symlink_to(ckpt)
    elif spelling == "hardlink":
        os.link(ckpt, out)
    result = run_tool(EXPORT, "--checkpoint", ckpt, "--output", out)
    assert_failed(result, 1, "export: error:", f"cannot write {out}", "is the input file")
    assert ckpt.read_bytes() == tiny_ckpt.read_bytes() and not leftovers(tmp_path)


def test_export_output_is_a_folder_and_usage_errors(tiny_ckpt, tmp_path):
    (tmp_path / "dir.pt").mkdir()
    assert_failed(run_tool(EXPORT, "--checkpoint", tiny_ckpt, "--output", tmp_path / "dir.pt"), 1,
                  "export: error:", f"cannot write {tmp_path / 'dir.pt'}", "is a folder")
    assert_failed(run_tool(EXPORT, "--checkpoint", tiny_ckpt), 2, "export: error:", "--output")
    assert_failed(run_tool(EXPORT, "--inspect", tmp_path / "none.pt"), 1, "export: error:", "no such file")
    assert not leftovers(tmp_path)


def test_export_ctrl_c_leaves_nothing(tiny_ckpt, tmp_path):
    """SIGINT while the parity gate runs on the written temp file: exit 130, one line, no file."""
    out = tmp_path / "m.pt"
    result = interrupt_when([EXPORT, "--checkpoint", tiny_ckpt, "--output", out], lambda: leftovers(tmp_path))
    assert_failed(result, 130, "export: interrupted")
    assert_nothing_written(out)


# ----------------------------------------------------------------------------- convert_mmseg.py

def test_convert_full_disk(mmseg_ckpt, full_disk):
    out = full_disk.folder / "ours.pth"
    result = run_tool(CONVERT, mmseg_ckpt, out, fail_after=full_disk.fail_after)
    assert_failed(result, 1, "convert_mmseg: error:", f"cannot write {out}", NO_SPACE)
    assert_nothing_written(out)


def test_convert_refuses_to_overwrite_its_input(mmseg_ckpt, tmp_path):
    src = tmp_path / "mm.pth"
    src.write_bytes(mmseg_ckpt.read_bytes())
    result = run_tool(CONVERT, src, src)
    assert_failed(result, 1, "convert_mmseg: error:", f"cannot write {src}", "is the input file")
    assert src.read_bytes() == mmseg_ckpt.read_bytes() and not leftovers(tmp_path)


def test_convert_output_folder_is_a_file(mmseg_ckpt, tmp_path):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "o.pth"
    assert_failed(run_tool(CONVERT, mmseg_ckpt, out), 1, "convert_mmseg: error:", f"cannot write {out}",
                  "is not a folder")


# ----------------------------------------------------------------------------- evaluate.py

def evaluate_args(ckpt: Path, data: Path, *extra) -> list:
    return ["--checkpoint", ckpt, "--data-root", data, "--device", "cpu", "--workers", "0", *extra]


def test_evaluate_json_into_missing_folder_fails_before_evaluating(tiny_ckpt, data_root, tmp_path):
    out = tmp_path / "missing" / "r.json"
    result = run_tool(EVALUATE, *evaluate_args(tiny_ckpt, data_root, "--json", out))
    assert_failed(result, 1, "evaluate: error:", f"cannot write {out}", "does not exist")
    assert "mIoU" not in result.stdout  # refused up front: nothing was evaluated
    assert not out.parent.exists()


def test_evaluate_json_refuses_to_overwrite_the_checkpoint(tiny_ckpt, data_root, tmp_path):
    ckpt = tmp_path / "c.pth"
    ckpt.write_bytes(tiny_ckpt.read_bytes())
    result = run_tool(EVALUATE, *evaluate_args(ckpt, data_root, "--json", ckpt))
    assert_failed(result, 1, "evaluate: error:", f"cannot write {ckpt}", "is the input file")
    assert ckpt.read_bytes() == tiny_ckpt.read_bytes() and "mIoU" not in result.stdout


def test_evaluate_full_disk_prints_results_then_fails(tiny_ckpt, data_root, full_disk):
    out = full_disk.folder / "r.json"
    full_disk.fill()
    result = run_tool(EVALUATE, *evaluate_args(tiny_ckpt, data_root, "--json", out),
                      fail_after=None if full_disk.fail_after is None else 10)
    assert_failed(result, 1, "evaluate: error:", f"cannot write {out}", NO_SPACE, only_line=False)
    assert '"mIoU":' in result.stdout and "(2 images, val)" in result.stdout  # the results are not lost
    assert_nothing_written(out)


@pytest.mark.parametrize("flag, value", [("--max-images", "0"), ("--max-images", "-3"), ("--max-images", "many"),
                                         ("--workers", "-1")])
def test_evaluate_bad_counts_are_usage_errors(tiny_ckpt, data_root, flag, value):
    result = run_tool(EVALUATE, *evaluate_args(tiny_ckpt, data_root, flag, value))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"argument {flag}" in result.stderr and "nan" not in result.stdout.lower()


def test_evaluate_no_labelled_pixel_is_an_error_not_nan(tiny_ckpt, tmp_path):
    fake_data.write_cityscapes(tmp_path, "val", 2, seed=3)
    for label in tmp_path.rglob("*_gtFine_labelTrainIds.png"):
        assert cv2.imwrite(str(label), np.full((128, 256), 255, np.uint8))  # everything ignored
    out = tmp_path / "r.json"
    result = run_tool(EVALUATE, *evaluate_args(tiny_ckpt, tmp_path, "--json", out))
    assert_failed(result, 1, "evaluate: error:", "no labelled pixel", only_line=False)
    assert "mIoU:" not in result.stdout and not out.exists()


# ----------------------------------------------------------------------------- train.py

def train_args(data: Path, work_dir: Path, *extra) -> list:
    return ["--config", TINY, "--data-root", data, "--work-dir", work_dir, "--device", "cpu", "--iters", "2",
            "--batch-size", "2", "--workers", "0", "--val-interval", "0", *extra]


def test_train_work_dir_is_a_file(data_root, tmp_path):
    wd = tmp_path / "notes.txt"
    wd.write_text("mine")
    result = run_tool(TRAIN, *train_args(data_root, wd))
    assert_failed(result, 1, "train: error:", f"--work-dir {wd} is a file")
    assert wd.read_text() == "mine"


def test_train_refuses_load_from_a_checkpoint_it_would_overwrite(data_root, tiny_ckpt, tmp_path):
    (tmp_path / "wd").mkdir()
    latest = tmp_path / "wd" / "latest.pth"
    latest.write_bytes(tiny_ckpt.read_bytes())
    result = run_tool(TRAIN, *train_args(data_root, tmp_path / "wd", "--load-from", latest))
    assert_failed(result, 1, "train: error:", f"--load-from {latest}", "overwrites")
    assert latest.read_bytes() == tiny_ckpt.read_bytes()


def test_train_ctrl_c(data_root, tmp_path):
    wd = tmp_path / "run"
    started: list[float] = []

    def training() -> bool:  # log.jsonl is written just before the loop; give the loop a moment
        if (wd / "log.jsonl").exists() and not started:
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] > 1.0

    result = interrupt_when([TRAIN, *train_args(data_root, wd, "--iters", "500")], training)
    assert_failed(result, 130, "train: interrupted", only_line=False)
    assert not leftovers(wd)


def test_train_full_disk(data_root, full_disk):
    wd = full_disk.folder / "run"
    result = run_tool(TRAIN, *train_args(data_root, wd), fail_after=full_disk.fail_after)
    assert_failed(result, 1, "train: error:", f"cannot write {wd / 'latest.pth'}", NO_SPACE, only_line=False)
    assert_nothing_written(wd / "latest.pth")


# ----------------------------------------------------------------------------- make_synthetic.py / prepare_cityscapes.py

def test_make_synthetic_full_disk(full_disk):
    out = full_disk.folder / "synth"
    result = run_tool(SYNTHETIC, "--out", out, "--train", "60", "--val", "0", "--size", "64x128", "--quiet",
                      fail_after=full_disk.fail_after)
    assert_failed(result, 1, "make_synthetic.py: error:", "cannot write", NO_SPACE)
    assert not leftovers(out)
    pngs = list(out.rglob("*.png"))
    assert pngs and all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is not None for p in pngs)  # all complete


def test_make_synthetic_video_full_disk(full_disk):
    video = full_disk.folder / "drive.mp4"
    full_disk.fill()
    result = run_tool(SYNTHETIC, "--out", full_disk.folder / "d", "--train", "0", "--val", "0", "--video", video,
                      "--frames", "40", "--size", "128x256", "--quiet", fail_after=full_disk.fail_after)
    assert_failed(result, 1, "make_synthetic.py: error:", "cannot write", NO_SPACE)
    assert_nothing_written(video)
    assert not (full_disk.folder / "drive_labels").exists()  # no labels without their video


def test_prepare_cityscapes_full_disk(full_disk):
    root = full_disk.folder
    fake_data.write_cityscapes(root, "train", 3, size=(64, 128), label_ids=True)
    for image in root.rglob("*_leftImg8bit.png"):
        image.unlink()  # only the labels are needed; room for them on the small disk
    full_disk.fill()
    result = run_tool(PREPARE, "--data-root", root, "--workers", "1", fail_after=None if full_disk.fail_after is None else 10)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("prepare_cityscapes: error:")]
    assert len(errors) == 3 and all("cannot write" in e and "_gtFine_labelTrainIds.png" in e and NO_SPACE in e
                                    for e in errors), result.stderr
    assert not list(root.rglob("*_labelTrainIds.png")) and not leftovers(root)


# ----------------------------------------------------------------------------- overlay_frame.py

OVERLAY_FRAME = ROOT / "scripts" / "overlay_frame.py"


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory) -> tuple[Path, Path]:
    """Two 5-frame 32x48 videos, frame k of each a flat grey (20 k, and 200 - 20 k)."""
    folder = tmp_path_factory.mktemp("videos")
    paths = []
    for name, level in (("in.avi", lambda k: 20 * k), ("overlay.avi", lambda k: 200 - 20 * k)):
        writer = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
        for k in range(5):
            writer.write(np.full((32, 48, 3), level(k), np.uint8))
        writer.release()
        paths.append(folder / name)
    return paths[0], paths[1]


def test_overlay_frame_puts_the_two_frames_side_by_side(two_videos, tmp_path):
    out = tmp_path / "pair.png"
    result = run_tool(OVERLAY_FRAME, *two_videos, out, "--frame", "3")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    picture = cv2.imread(str(out))
    assert picture.shape == (32, 48 + 8 + 48, 3)
    # MJPG is lossy: flat frames come back within a few levels of what was written.
    assert abs(int(picture[:, :48].mean()) - 60) <= 3 and abs(int(picture[:, 56:].mean()) - 140) <= 3
    assert (picture[:, 48:56] == 255).all()  # the white gap
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pair.png"]  # no temporary left


@pytest.mark.parametrize("case, code, fragment", [
    ("past the end", 1, "has 5 frames (0 to 4); --frame 5 is past its end"),
    ("negative frame", 2, "argument --frame: must be at least 0, got -1"),
    ("output is the input", 1, "refusing to overwrite an input"),
    ("no image writer", 1, "OpenCV has no image writer for .xyz"),
    ("missing video", 1, "cannot open"),
])
def test_overlay_frame_refuses_bad_arguments_before_writing(two_videos, tmp_path, case, code, fragment):
    video, overlay = two_videos
    before = overlay.read_bytes()
    out = {"output is the input": overlay, "no image writer": tmp_path / "pair.xyz"}.get(case, tmp_path / "pair.png")
    first = tmp_path / "missing.mp4" if case == "missing video" else video
    frame = {"past the end": "5", "negative frame": "-1"}.get(case, "0")
    result = run_tool(OVERLAY_FRAME, first, overlay, out, "--frame", frame)
    assert result.returncode == code and "Traceback" not in result.stderr, result.stderr
    assert fragment in result.stderr, result.stderr
    assert overlay.read_bytes() == before  # an input is never touched
    assert sorted(tmp_path.iterdir()) == [], sorted(tmp_path.iterdir())  # nothing written, no temporary


def test_overlay_frame_full_disk_leaves_nothing(two_videos, tmp_path):
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    disk = Disk(tmp_path / "disk", None)
    mount_tmpfs(disk.folder)
    try:
        disk.fill()
        out = disk.folder / "pair.png"
        result = run_tool(OVERLAY_FRAME, *two_videos, out, "--frame", "1")
        assert_failed(result, 1, "overlay_frame.py: error:", f"cannot write {out}", NO_SPACE)
        assert_nothing_written(out)
    finally:
        unmount(disk.folder)


def test_sizes_are_read_the_same_by_every_tool():
    """export.py, make_synthetic.py and benchmark.py read HxW with one helper (emaseg.cli)."""
    from emaseg.cli import parse_size

    assert parse_size("512x1024") == (512, 1024) and parse_size(" 64 X 128 ") == (64, 128)
    for bad in ("512", "512x", "x1024", "-1x5", "1.5x2", "axb"):
        with pytest.raises(ValueError, match="--frame-size expects HxW"):
            parse_size(bad, "--frame-size")


def test_tools_end_the_same_way(capsys):
    """train.py, evaluate.py, export.py, convert_mmseg.py and make_synthetic.py end through one
    helper (emaseg.cli.run_tool): exit status, one-line error, cleanup however main ends."""
    from emaseg.cli import run_tool

    cleaned: list[int] = []

    def ends(outcome):
        def main():
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        return run_tool("tool", main, errors=(OSError,), usage_errors=(LookupError,), interrupted="stopped",
                        describe=lambda e: f"<{e}>", cleanup=lambda: cleaned.append(1))

    assert ends(None) == 0 and ends(object()) == 0 and ends(3) == 3
    assert capsys.readouterr().err == ""
    assert ends(OSError("disk full")) == 1 and capsys.readouterr().err == "tool: error: <disk full>\n"
    assert ends(KeyError("bad flag")) == 2 and capsys.readouterr().err == "tool: error: <'bad flag'>\n"
    assert ends(KeyboardInterrupt()) == 130 and capsys.readouterr().err == "tool: stopped\n"
    with pytest.raises(ZeroDivisionError):  # a bug is not a user error: its traceback stays
        ends(ZeroDivisionError("bug"))
    assert len(cleaned) == 7   # every call above


def test_tool_errors_show_crafted_names_escaped(tmp_path):
    """A file name with terminal control characters reaches stderr as visible escapes."""
    crafted = tmp_path / "\x1b]0;pwned\x07\x1b[2J.pth"
    result = subprocess.run([sys.executable, str(ROOT / "python" / "export.py"), "--checkpoint", str(crafted),
                             "--output", str(tmp_path / "out.pt")], capture_output=True, text=True, env=ENV)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr, result.stderr
    assert "\\x1b]0;pwned\\x07" in result.stderr


@pytest.mark.parametrize("args, message", [
    # A bound the help promises, or an empty value, is a usage error naming the flag: never a
    # value that silently means something else (a negative interval meant "never validate").
    (["--val-interval", "-1"], "argument --val-interval: must be at least 0, got -1"),
    (["--workers", "-1"], "argument --workers: must be at least 0, got -1"),
    (["--iters", "0"], "argument --iters: must be at least 1, got 0"),
    (["--batch-size", "-2"], "argument --batch-size: must be at least 1, got -2"),
    (["--seed", "-1"], "argument --seed: must be at least 0, got -1"),
    (["--stop-at", "0"], "argument --stop-at: must be at least 1, got 0"),
])
def test_train_flag_bounds_are_usage_errors(tmp_path, args, message):
    result = run_tool(TRAIN, "--config", "emanet_r18w8-d8_128x256_synthetic", "--data-root", tmp_path,
                      "--work-dir", tmp_path / "w", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("flag", ["--frame-size", "--frame-sizes"])
def test_export_empty_frame_size_is_a_usage_error(tiny_ckpt, tmp_path, flag):
    out = tmp_path / "m.pt2"
    result = run_tool(EXPORT, "--checkpoint", tiny_ckpt, "--output", out, flag, "")
    assert result.returncode == 2 and f"{flag} expects HxW" in result.stderr, result.stderr
    assert not out.exists() and not list(tmp_path.glob(".m.pt2*"))
