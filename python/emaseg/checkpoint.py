"""Our checkpoint file: one `.pth` with state dict, full config, class names and palette.

Written atomically (emaseg.atomic: temp file in the same folder + rename), so a crash never leaves a
half-written file under the final name; read with `weights_only=True` only.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from .atomic import atomic_open, check_output
from .classes import classes_and_palette
from .config import Config

FORMAT = "emaseg.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, unreadable or not what was expected."""


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save `obj` to `path` atomically (emaseg.atomic); raises WriteError if it cannot.

    Serialised in memory first: torch's own file writer reports a full disk as an opaque C++
    error, while Python I/O raises an OSError that names the reason.
    """
    check_output(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getbuffer())


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, model: nn.Module, cfg: Config, *,
                    class_names: list[str] | None = None,
                    palette: list[tuple[int, int, int]] | list[list[int]] | None = None,
                    extra: dict[str, Any] | None = None) -> None:
    """Saves `model`'s weights with everything needed to rebuild and use it."""
    default_names, default_palette = classes_and_palette(cfg.model.num_classes)
    names = list(class_names) if class_names is not None else default_names
    colours = [list(map(int, c)) for c in (palette if palette is not None else default_palette)]
    if len(names) != cfg.model.num_classes or len(colours) != cfg.model.num_classes:
        raise CheckpointError(f"{len(names)} class names / {len(colours)} colours for "
                              f"{cfg.model.num_classes} classes")
    state = model.module.state_dict() if hasattr(model, "module") else model.state_dict()
    obj: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "class_names": names,
        "palette": colours,
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
    }
    if extra:
        obj.update(extra)
    atomic_save(obj, path)


def unwrap_state_dict(obj: Any, keys: tuple[str, ...] = ("state_dict",)) -> Optional[dict[str, torch.Tensor]]:
    """The weights in a loaded checkpoint: a bare state dict or the one under the first of `keys`
    ("state_dict": mmcv/mmseg files), without DistributedDataParallel's "module." prefix; None
    when there is no non-empty dict of tensors."""
    state = obj
    if isinstance(obj, dict):
        for key in keys:
            if isinstance(obj.get(key), dict):
                state = obj[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def read_torch_file(path: str | os.PathLike) -> Any:
    """torch.load(weights_only=True) with one clear error per way a file can be wrong."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load fails in many ways (pickle, zip, EOF, KeyError) on bad bytes
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {first}") from e


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Reads one of our checkpoints; raises CheckpointError if it is not one."""
    obj = read_torch_file(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        hint = ""
        if isinstance(obj, dict) and "state_dict" in obj and "meta" in obj:
            hint = " (looks like an mmsegmentation checkpoint: convert it with scripts/convert_mmseg.py)"
        raise CheckpointError(f"{path}: not an emaseg checkpoint{hint}")
    if obj.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {obj.get('format_version')} is not "
                              f"supported (this emaseg reads version {FORMAT_VERSION})")
    return obj


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuilds the model stored in one of our checkpoints, in eval mode.

    The config, class names and palette are attached as `model.config`, `model.class_names`,
    `model.palette`.
    """
    from .models import build_model

    ckpt = load_checkpoint(path)
    cfg = Config.from_dict(ckpt["config"])
    model = build_model(cfg)
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit config {cfg.name}: {e}") from e
    model.config = cfg
    model.class_names = list(ckpt["class_names"])
    model.palette = [tuple(c) for c in ckpt["palette"]]
    return model.to(device).eval()
