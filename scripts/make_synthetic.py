#!/usr/bin/env python
"""Write the procedural street-scene dataset in the Cityscapes layout, and optionally a video.

    python scripts/make_synthetic.py --out data/synthetic [--train 200] [--val 50]
        [--size 512x1024] [--seed 0] [--video data/drive.mp4 --frames 100 --fps 10]

Layout (read by the Cityscapes loader, dataset name `synthetic`):
    OUT/leftImg8bit/{train,val}/synth/synth_{split}_{i:06d}_leftImg8bit.png        BGR images
    OUT/gtFine/{train,val}/synth/synth_{split}_{i:06d}_gtFine_labelTrainIds.png     uint8 trainIds
Video: PATH (mp4v) plus PATH-without-suffix + `_labels/frame_{k:06d}.png`.

Every argument is checked before anything is written; a bad one gives one error line on stderr
and exit status 2. Files are written under a temporary name and renamed when complete
(emaseg.atomic); a write error (e.g. a full disk) is one line naming the file and the reason,
exit status 1, every file already written complete; Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

try:
    import streetgen as synthetic
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import streetgen as synthetic

from emaseg import cli
from emaseg.atomic import WriteError
from emaseg.classes import CITYSCAPES_CLASSES

PROG = "make_synthetic.py"


class UsageError(Exception):
    """A bad command line: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print the whole usage text
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="dataset root to write (Cityscapes layout)")
    p.add_argument("--train", type=int, default=200, help="training images (default 200)")
    p.add_argument("--val", type=int, default=50, help="validation images (default 50)")
    p.add_argument("--size", default="512x1024", help="HxW in pixels (default 512x1024)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--video", default=None, help="also write a drive down one street to this .mp4")
    p.add_argument("--frames", type=int, default=None, help="video frames (default 100)")
    p.add_argument("--fps", type=float, default=None, help="video frame rate (default 10)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = cli.parse_size(text)
    except ValueError as e:
        raise UsageError(str(e)) from None
    lo, hi = synthetic.MIN_SIZE, synthetic.MAX_SIZE
    if not (lo <= h <= hi and lo <= w <= hi):
        raise UsageError(f"--size {h}x{w}: height and width must be in [{lo}, {hi}] pixels")
    return h, w


def _check_writable_dir(path: Path, what: str) -> None:
    """`path` is, or can be created as, a directory we may write into. Creates nothing."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{what} {path}: {probe} exists and is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: {probe} is not writable")


def validate(args: argparse.Namespace) -> argparse.Namespace:
    """Check every argument (raising UsageError) and fill in defaults."""
    args.size = parse_size(args.size)
    for name in ("train", "val"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name} must be a number of images >= 0 (got {getattr(args, name)})")
    if args.train + args.val == 0 and args.video is None:
        raise UsageError("nothing to write: --train and --val are 0 and no --video is given")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0 (got {args.seed})")
    _check_writable_dir(Path(args.out), "--out")
    if args.video is None:
        if args.frames is not None or args.fps is not None:
            raise UsageError("--frames and --fps only apply with --video PATH")
        return args
    args.frames = 100 if args.frames is None else args.frames
    args.fps = 10.0 if args.fps is None else args.fps
    video = Path(args.video)
    if video.suffix.lower() != ".mp4":
        raise UsageError(f"--video must name an .mp4 file (got {args.video!r})")
    if args.frames < 1:
        raise UsageError(f"--frames must be positive (got {args.frames})")
    if not (0 < args.fps <= 1000):
        raise UsageError(f"--fps must be in (0, 1000] (got {args.fps})")
    if args.size[0] % 2 or args.size[1] % 2:
        raise UsageError(f"--size {args.size[0]}x{args.size[1]}: a video needs an even height and width")
    if video.is_dir():
        raise UsageError(f"--video {video} is a directory")
    _check_writable_dir(video.parent, "--video")
    return args


def _summary(stats: dict) -> str:
    h, w = stats["size"]
    lines = [f"wrote {stats['train']} train + {stats['val']} val images ({h}x{w}) in {stats['seconds']:.1f} s "
             f"({stats['images_per_s']:.1f} images/s)"]
    parts = [f"{CITYSCAPES_CLASSES[c] if c < len(CITYSCAPES_CLASSES) else 'ignore'} {100 * f:.1f}"
             for c, f in sorted(stats["class_fraction"].items(), key=lambda kv: -kv[1])]
    lines.append(f"pixel share % ({len(parts)} labels): " + ", ".join(parts))
    return "\n".join(lines)


def _describe(error: Exception) -> str:
    """One line: the atomic writer's own text, else "PATH: REASON" rather than "[Errno 2] ...: 'PATH'"."""
    if isinstance(error, OSError) and not isinstance(error, WriteError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)


def main(argv: list[str] | None = None) -> int:
    try:
        args = validate(_parser().parse_args(argv))
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)

    def run() -> None:
        stats = None
        if args.train + args.val > 0:  # 0 + 0: only the video
            stats = synthetic.write_dataset(out, args.train, args.val, args.size, args.seed, progress=not args.quiet)
            print(f"dataset: {out.resolve()}")
            print(_summary(stats))
        if stats is not None and stats["stale"]:
            print(f"note: {stats['stale']} other *_leftImg8bit.png files (an earlier, bigger run?) are also in "
                  f"{out}/leftImg8bit and will be read by a loader", file=sys.stderr)
        if args.video is not None:
            Path(args.video).parent.mkdir(parents=True, exist_ok=True)
            v = synthetic.write_video(args.video, args.frames, args.fps, args.size, args.seed, progress=not args.quiet)
            print(f"video: {v['path']} ({v['frames']} frames at {v['fps']:g} fps, verified), "
                  f"labels: {v['labels']}/frame_*.png ({v['seconds']:.1f} s)")

    return cli.run_tool(PROG, run, errors=(OSError, ValueError), describe=_describe,
                        interrupted="interrupted (completed files are valid; nothing half-written is left)")


if __name__ == "__main__":
    sys.exit(main())
