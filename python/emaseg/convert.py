"""Conversion of mmsegmentation EMANet checkpoints into ours.

Our module names equal the reference's, so conversion is a strict check rather than a renaming:
the architecture is inferred from the weights (or checked against a named config), and every
source key must be used, every model key filled, every shape equal.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from .atomic import WriteError, check_output
from .checkpoint import CheckpointError, file_sha256, read_torch_file, save_checkpoint, unwrap_state_dict
from .classes import classes_and_palette
from .config import Config, get_config
from .models import build_model
from .models.backbone import ARCH

RECIPES = ("512x1024", "769x769")


class ConversionError(RuntimeError):
    """The source checkpoint cannot become an emaseg checkpoint; the message says why."""


def extract_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The weights of an mmseg checkpoint (`{'meta', 'state_dict'}`) or of a bare state dict."""
    sd = unwrap_state_dict(obj)
    if sd is None:
        raise ConversionError(f"{source}: not a checkpoint: no state_dict of tensors inside")
    return sd


def _shape(sd: dict[str, torch.Tensor], key: str, dim: int) -> int:
    return int(sd[key].shape[dim])


def infer_config(sd: dict[str, torch.Tensor], recipe: str = "512x1024") -> Config:
    """Reads depth, widths and classes off the weights; the recipe supplies what weights don't hold."""
    if "decode_head.ema_module.bases" not in sd:
        heads = sorted({k.split(".")[1] for k in sd if k.startswith("decode_head.")})
        raise ConversionError("not an EMANet checkpoint: it has no decode_head.ema_module.bases"
                              + (f" (decode head has: {', '.join(heads[:6])})" if heads else ""))
    if recipe not in RECIPES:
        raise ConversionError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    blocks = []
    for stage in range(1, 5):
        ids = {int(m.group(1)) for k in sd if (m := re.match(rf"backbone\.layer{stage}\.(\d+)\.", k))}
        blocks.append(max(ids) + 1 if ids else 0)
    bottleneck = "backbone.layer1.0.conv3.weight" in sd
    depth = next((d for d, (blk, n) in ARCH.items()
                  if list(n) == blocks and (blk.expansion == 4) == bottleneck), None)
    if depth is None:
        raise ConversionError(f"backbone with blocks per stage {blocks} "
                              f"({'bottleneck' if bottleneck else 'basic'}) is no ResNet of depth {sorted(ARCH)}")
    try:
        num_classes = _shape(sd, "decode_head.conv_seg.weight", 0)
        has_aux = "auxiliary_head.conv_seg.weight" in sd
        overrides = {
            "depth": depth,
            "stem_channels": _shape(sd, "backbone.stem.6.weight", 0),
            "base_channels": _shape(sd, "backbone.layer1.0.conv1.weight", 0),
            "num_classes": num_classes,
            "channels": _shape(sd, "decode_head.conv_seg.weight", 1),
            "ema_channels": _shape(sd, "decode_head.ema_in_conv.conv.weight", 0),
            "num_bases": _shape(sd, "decode_head.ema_module.bases", 2),
            "concat_input": "decode_head.conv_cat.conv.weight" in sd,
            "aux_head": has_aux,
            "aux_channels": _shape(sd, "auxiliary_head.conv_seg.weight", 1) if has_aux else 256,
        }
    except KeyError as e:
        raise ConversionError(f"incomplete EMANet checkpoint: missing {e.args[0]}") from e
    full_width = overrides["stem_channels"] == 64 and overrides["base_channels"] == 64
    named = f"emanet_r{depth}-d8_{recipe}_80k_cityscapes"
    cfg = get_config(named if depth in (50, 101) else f"emanet_r50-d8_{recipe}_80k_cityscapes")
    for k, v in overrides.items():
        setattr(cfg.model, k, v)
    if not (full_width and depth in (50, 101) and num_classes == 19 and cfg.model == get_config(named).model):
        width = "" if full_width else f"w{overrides['base_channels']}"
        cfg.name = f"emanet_r{depth}{width}-d8_{recipe}_converted"
    return cfg


def check_weights(sd: dict[str, torch.Tensor], cfg: Config) -> None:
    """Every key used, every key filled, every shape equal — or one error listing what is wrong."""
    expected = build_model(cfg).state_dict()
    missing = [k for k in expected if k not in sd]
    unused = [k for k in sd if k not in expected]
    mismatched = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}"
                  for k, v in expected.items() if k in sd and sd[k].shape != v.shape]
    problems = []
    for what, keys in (("missing keys", missing), ("unused keys", unused), ("shape mismatches (source vs model)", mismatched)):
        if keys:
            shown = ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")
            problems.append(f"{what}: {shown}")
    if problems:
        raise ConversionError(f"weights do not fit config {cfg.name}: " + "; ".join(problems))


def _class_names(obj: Any, num_classes: int) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Cityscapes names for 19 classes; otherwise whatever the mmseg metadata holds, else generic."""
    names, palette = classes_and_palette(num_classes)
    meta = obj.get("meta", {}) if isinstance(obj, dict) else {}
    if num_classes != 19 and isinstance(meta, dict):
        ds = meta.get("dataset_meta", meta)
        src_names = ds.get("classes", ds.get("CLASSES")) if isinstance(ds, dict) else None
        src_palette = ds.get("palette", ds.get("PALETTE")) if isinstance(ds, dict) else None
        if src_names is not None and len(src_names) == num_classes:
            names = [str(n) for n in src_names]
        if src_palette is not None and len(src_palette) == num_classes:
            palette = [tuple(int(c) for c in p) for p in src_palette]
    return names, palette


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, config: str | None = None,
            recipe: str = "512x1024") -> Config:
    """Converts `src` (mmseg) into our checkpoint at `dst`; returns the config it was matched to."""
    src, dst = Path(src), Path(dst)
    try:  # before reading (seconds for a big file): a bad output is known now
        check_output(dst, inputs=[src])
    except WriteError as e:
        raise ConversionError(str(e)) from e
    try:
        obj = read_torch_file(src)
    except CheckpointError as e:
        raise ConversionError(str(e)) from e
    if isinstance(obj, dict) and obj.get("format") == "emaseg.checkpoint":
        raise ConversionError(f"{src}: already an emaseg checkpoint; nothing to convert")
    sd = extract_state_dict(obj, str(src))
    if config is not None:
        try:
            cfg = get_config(config)
        except ValueError as e:
            raise ConversionError(str(e)) from e
        if "decode_head.ema_module.bases" not in sd:
            raise ConversionError(f"{src}: not an EMANet checkpoint: it has no decode_head.ema_module.bases")
    else:
        cfg = infer_config(sd, recipe)
    check_weights(sd, cfg)
    model = build_model(cfg)
    model.load_state_dict(sd, strict=True)
    names, palette = _class_names(obj, cfg.model.num_classes)
    meta = obj.get("meta", {}) if isinstance(obj, dict) else {}
    source = {"file": src.name, "sha256": file_sha256(src),
              "mmseg_version": str(meta.get("mmseg_version", "unknown")) if isinstance(meta, dict) else "unknown"}
    try:
        save_checkpoint(dst, model, cfg, class_names=names, palette=palette, extra={"converted_from": source})
    except OSError as e:  # WriteError: "cannot write DST: REASON", temp file already removed
        raise ConversionError(str(WriteError.from_os_error(dst, e))) from e
    return cfg
