"""Files: a dataset in the Cityscapes layout, or a video with one label PNG per frame. Every
file is written atomically (emaseg.atomic), labels before the image they belong to."""
from __future__ import annotations

import errno
import os
import re
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from emaseg.atomic import atomic_path, write_atomic
from .labels import IGNORE, NUM_CLASSES
from .scene import check_size, generate_scene, generate_video_frames, scene_rng


def atomic_write_png(path: Path, array: np.ndarray) -> None:
    """Encode, then write atomically (emaseg.atomic): a crash never leaves a truncated PNG under
    the final name, and the hidden `.NAME.*.tmp` name matches no loader pattern."""
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"could not encode {path}")
    write_atomic(path, buf.tobytes())


def image_paths(out: Path, split: str, index: int) -> tuple[Path, Path]:
    """(image, label) paths of image `index` of `split` in the Cityscapes layout."""
    stem = f"synth_{split}_{index:06d}"
    return (out / "leftImg8bit" / split / "synth" / f"{stem}_leftImg8bit.png",
            out / "gtFine" / split / "synth" / f"{stem}_gtFine_labelTrainIds.png")


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)


def write_dataset(out: str | Path, train: int, val: int, size: tuple[int, int], seed: int = 0,
                  progress: bool = True) -> dict:
    """Write `train` + `val` scenes in the Cityscapes layout under `out`. Returns a summary:
    counts, seconds, images/s and the fraction of pixels per class."""
    out = Path(out)
    h, w = size
    check_size(h, w)
    counts = np.zeros(256, np.int64)
    t0 = time.perf_counter()
    # PNG encoding (cv2 releases the GIL) overlaps generating the next scene; a short queue
    # bounds memory and surfaces write errors promptly.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: deque[Future] = deque()
        for split, n in (("train", train), ("val", val)):
            img_path, lab_path = image_paths(out, split, 0)
            img_path.parent.mkdir(parents=True, exist_ok=True)
            lab_path.parent.mkdir(parents=True, exist_ok=True)
            bar = _progress(n, split, progress)
            for i in range(n):
                img, lab = generate_scene(scene_rng(seed, split, i), h, w)
                pending.append(writer.submit(_write_pair, *image_paths(out, split, i), img, lab))
                while len(pending) > 2:
                    pending.popleft().result()
                counts += np.bincount(lab.ravel(), minlength=256)
                if bar is not None:
                    bar.update(1)
            while pending:
                pending.popleft().result()
            if bar is not None:
                bar.close()
    secs = time.perf_counter() - t0
    total = max(1, int(counts.sum()))
    # Images of an earlier, bigger run are left alone but reported: a loader would read them too.
    stale = 0
    for split, n in (("train", train), ("val", val)):
        for p in image_paths(out, split, 0)[0].parent.glob("*_leftImg8bit.png"):
            m = re.fullmatch(rf"synth_{split}_(\d+)_leftImg8bit\.png", p.name)
            stale += m is None or int(m.group(1)) >= n
    return {"train": train, "val": val, "size": (h, w), "seconds": secs,
            "images_per_s": (train + val) / max(secs, 1e-9), "stale": stale,
            "class_fraction": {i: counts[i] / total for i in list(range(NUM_CLASSES)) + [IGNORE] if counts[i]}}


def _write_pair(img_path: Path, lab_path: Path, img: np.ndarray, lab: np.ndarray) -> None:
    atomic_write_png(lab_path, lab)      # label first: an image on disk always has its label
    atomic_write_png(img_path, img)


def video_label_dir(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + "_labels") if path.suffix else path.with_name(path.name + "_labels")


def _video_error(what: str, folder: Path) -> OSError:
    """OpenCV's writer gives no reason for a failure; a full disk is the usual one, so say so
    when the folder's file system has (next to) no room left."""
    st = os.statvfs(folder)
    if st.f_bavail * st.f_frsize < 1 << 20:
        return OSError(errno.ENOSPC, f"{what}: {os.strerror(errno.ENOSPC)}")
    return OSError(what)


def write_video(path: str | Path, frames: int, fps: float, size: tuple[int, int], seed: int = 0,
                progress: bool = True) -> dict:
    """Write an mp4 ('mp4v') of a drive down a street plus `<stem>_labels/frame_{k:06d}.png`.
    The video is written under a temporary name, re-opened to check the frame count and size,
    and only then renamed into place."""
    path = Path(path)
    h, w = size
    check_size(h, w)
    if h % 2 or w % 2:
        raise ValueError(f"video size {h}x{w} must be even (mp4v would silently crop it)")
    labels = video_label_dir(path)
    made_labels = not labels.exists()
    labels.mkdir(parents=True, exist_ok=True)
    for old in labels.glob("frame_*.png"):  # a longer earlier run: keep labels == video frames
        if old.stem[6:].isdigit() and int(old.stem[6:]) >= frames:
            old.unlink()
    t0 = time.perf_counter()
    bar = _progress(frames, "video", progress)
    try:
        # OpenCV picks the container from the extension, so the temporary name keeps it.
        with atomic_path(path, suffix=path.suffix or ".mp4") as tmp:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
            if not writer.isOpened():
                raise _video_error("OpenCV cannot open an mp4v writer", path.parent)
            try:
                for k, (img, lab) in enumerate(generate_video_frames(seed, frames, h, w, fps)):
                    writer.write(img)
                    atomic_write_png(labels / f"frame_{k:06d}.png", lab)
                    if bar is not None:
                        bar.update(1)
            finally:
                writer.release()
            n, vw, vh = _probe_video(tmp)  # a full disk shows here: OpenCV's writer does not report it
            if (n, vw, vh) != (frames, w, h):
                raise _video_error(f"the video re-opened with {n} frames of {vw}x{vh}, expected {frames} of "
                                   f"{w}x{h}", path.parent)
    except BaseException:
        if made_labels:  # this run's own folder: no labels beside a video that was not written
            for k in range(frames):
                (labels / f"frame_{k:06d}.png").unlink(missing_ok=True)
            if not any(labels.iterdir()):
                labels.rmdir()
        raise
    finally:
        if bar is not None:
            bar.close()
    secs = time.perf_counter() - t0
    return {"path": str(path), "labels": str(labels), "frames": frames, "fps": fps, "seconds": secs}


def _probe_video(path: Path) -> tuple[int, int, int]:
    """(frames actually decodable, width, height)."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0, 0, 0
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        n = 0
        while cap.grab():
            n += 1
        return n, w, h
    finally:
        cap.release()
