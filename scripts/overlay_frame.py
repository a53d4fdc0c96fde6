#!/usr/bin/env python3
"""Put one frame of an input video and of its overlay side by side in a PNG (for READMEs).

    python scripts/overlay_frame.py data/sample/street.mp4 street_overlay.mp4 docs/overlay_sample.png --frame 50

A bad argument (a video that does not open, a frame past the end, an output that is an input or
that OpenCV cannot write) is one error line and exit status 1 before anything is written; the
picture is written under a temporary name and renamed when complete (emaseg.atomic).
"""
from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np

from emaseg import cli
from emaseg.atomic import check_output, write_atomic

PROG = "overlay_frame.py"


class FrameError(Exception):
    """A user error this tool reports in one line: a video, frame or picture format it cannot use."""


def read_frame(path: str, index: int) -> np.ndarray:
    if not os.path.isfile(path):  # before OpenCV, whose own warnings would say it less clearly
        raise FrameError(f"cannot open {path}: no such file")
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise FrameError(f"cannot open {path} as a video")
        # Checked before seeking, so a frame past the end is named as such, with the valid range.
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count > 0 and index >= count:
            raise FrameError(f"{path} has {count} frames (0 to {count - 1}); --frame {index} is past its end")
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok:
        raise FrameError(f"{path} has no frame {index}")
    return frame


def side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The two frames with an 8-pixel white gap between them."""
    if a.shape != b.shape:
        raise FrameError(f"frame sizes differ: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]}")
    gap = np.full((a.shape[0], 8, 3), 255, np.uint8)
    return np.hstack([a, gap, b])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="the input video")
    p.add_argument("overlay", help="its overlay video (ema_seg --output)")
    p.add_argument("output", help="the picture to write (any image format OpenCV writes, e.g. .png)")
    p.add_argument("--frame", type=cli.int_at_least(0), default=50, help="frame index, from 0 (default 50)")
    args = p.parse_args()

    def run() -> None:
        output = check_output(args.output, [args.input, args.overlay])
        if not cv2.haveImageWriter(str(output)):
            raise FrameError(f"cannot write {output}: OpenCV has no image writer for {output.suffix or 'no extension'}"
                             " (use .png)")
        picture = side_by_side(read_frame(args.input, args.frame), read_frame(args.overlay, args.frame))
        ok, encoded = cv2.imencode(output.suffix, picture)
        if not ok:
            raise FrameError(f"cannot encode the picture as {output.suffix}")
        write_atomic(output, encoded.tobytes())  # an OSError here names the file and the reason
        print(f"wrote {output}")

    return cli.run_tool(PROG, run, errors=(FrameError, OSError))


if __name__ == "__main__":
    sys.exit(main())
