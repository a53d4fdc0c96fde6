#!/usr/bin/env python3
"""Put one frame of an input video and of its overlay side by side in a PNG (for READMEs).

    python scripts/overlay_frame.py data/sample/street.mp4 street_overlay.mp4 docs/overlay_sample.png --frame 50
"""
import argparse
import sys

import cv2
import numpy as np


def read_frame(path: str, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise SystemExit(f"overlay_frame: error: cannot open {path}")
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"overlay_frame: error: {path} has no frame {index}")
    return frame


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input")
    p.add_argument("overlay")
    p.add_argument("output")
    p.add_argument("--frame", type=int, default=50)
    args = p.parse_args()
    a, b = read_frame(args.input, args.frame), read_frame(args.overlay, args.frame)
    if a.shape != b.shape:
        raise SystemExit(f"overlay_frame: error: frame sizes differ: {a.shape} vs {b.shape}")
    gap = np.full((a.shape[0], 8, 3), 255, np.uint8)
    if not cv2.imwrite(args.output, np.hstack([a, gap, b])):
        raise SystemExit(f"overlay_frame: error: cannot write {args.output}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
