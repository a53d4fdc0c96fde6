"""Writes Cityscapes' `*_gtFine_labelTrainIds.png` (19 training classes, 255 = ignore).

    python scripts/prepare_cityscapes.py --data-root data/cityscapes

Reads every `gtFine/<split>/<city>/*_gtFine_labelIds.png` and maps the 34 official label ids to
train ids with cityscapesScripts' table (`labels.py`); every other id becomes 255. Files that
already exist are skipped (idempotent; `--overwrite` redoes them), and each file is written to a
temporary name and renamed (emaseg.atomic), so an interrupted run never leaves a truncated mask.

Exit status: 0 done; 1 some file failed (each named on stderr with the reason, e.g. a full disk;
the others are complete) or no Cityscapes tree; 2 bad flags; 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys
import signal
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

try:
    from emaseg.atomic import WriteError, write_atomic
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    from emaseg.atomic import WriteError, write_atomic
from emaseg.classes import CITYSCAPES_ID_TO_TRAIN_ID  # noqa: E402
from emaseg.cli import int_at_least  # noqa: E402


def lookup_table() -> np.ndarray:
    table = np.full(256, 255, np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table


def convert_one(job: tuple[str, str]) -> str:
    """labelIds PNG -> labelTrainIds PNG, written atomically. Returns an error message or ''."""
    src, dst = job
    ids = cv2.imread(src, cv2.IMREAD_UNCHANGED)
    if ids is None or ids.ndim != 2 or ids.dtype != np.uint8:
        return f"{src}: not a single-channel 8-bit label image"
    ok, encoded = cv2.imencode(".png", lookup_table()[ids])
    if not ok:
        return f"{src}: PNG encoding failed"
    try:
        write_atomic(dst, encoded.tobytes())
    except OSError as e:  # WriteError: "cannot write DST: REASON"
        return str(WriteError.from_os_error(dst, e))
    return ""


def _worker_init() -> None:
    # Ctrl-C is handled once, by the parent; Pool.terminate's SIGTERM becomes SystemExit so the
    # atomic writer removes its temporary file instead of the worker dying mid-write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_term)


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def find_jobs(root: Path, splits: list[str], overwrite: bool) -> tuple[list[tuple[str, str]], int]:
    jobs, skipped = [], 0
    for split in splits:
        for src in sorted((root / "gtFine" / split).rglob("*_gtFine_labelIds.png")):
            dst = src.with_name(src.name.replace("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"))
            if dst.exists() and not overwrite:
                skipped += 1
                continue
            jobs.append((str(src), str(dst)))
    return jobs, skipped


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="Cityscapes root (holds gtFine/ and leftImg8bit/)")
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    p.add_argument("--workers", type=int_at_least(1), default=os.cpu_count() or 1)
    p.add_argument("--overwrite", action="store_true", help="rewrite existing labelTrainIds files")
    args = p.parse_args()

    root = Path(args.data_root)
    if not (root / "gtFine").is_dir():
        print(f"prepare_cityscapes: error: expected folder {root / 'gtFine'} (Cityscapes gtFine_trainvaltest) does not exist",
              file=sys.stderr)
        return 1
    jobs, skipped = find_jobs(root, [s for s in args.splits if (root / "gtFine" / s).is_dir()], args.overwrite)
    if not jobs and not skipped:
        print(f"prepare_cityscapes: error: no *_gtFine_labelIds.png under {root / 'gtFine'}", file=sys.stderr)
        return 1
    errors = []
    try:
        with Pool(max(1, args.workers), initializer=_worker_init) as pool:
            for message in tqdm(pool.imap_unordered(convert_one, jobs, chunksize=8), total=len(jobs),
                                desc="labelTrainIds"):
                if message:
                    errors.append(message)
    except KeyboardInterrupt:
        print("prepare_cityscapes: interrupted; files written so far are complete (run again to finish)",
              file=sys.stderr)
        return 130
    print(f"wrote {len(jobs) - len(errors)} files, skipped {skipped} existing")
    for message in errors[:20]:
        print(f"prepare_cityscapes: error: {message}", file=sys.stderr)
    if len(errors) > 20:  # a full disk fails every file: the reason is in the first lines
        print(f"prepare_cityscapes: error: ... and {len(errors) - 20} more files failed", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
