"""Starting weights for training (`train.py --load-from`): whatever of a file fits the model."""
from __future__ import annotations

from torch import nn

from ..checkpoint import read_torch_file, unwrap_state_dict


class PretrainedError(ValueError):
    """Nothing of the file fits the model: the message says what the file holds."""


def _group(keys: list[str], limit: int = 6) -> str:
    """'decode_head.conv_seg (2), auxiliary_head (6)': key counts per module, for short reports."""
    counts: dict[str, int] = {}
    for k in keys:
        parts = k.split(".")
        prefix = ".".join(parts[:2]) if len(parts) > 2 else parts[0]
        counts[prefix] = counts.get(prefix, 0) + 1
    items = [f"{p} ({n})" for p, n in counts.items()]
    return ", ".join(items[:limit]) + (f", ... {len(items) - limit} more" if len(items) > limit else "")


def load_pretrained(model: nn.Module, path: str) -> list[str]:
    """Loads what fits from `path` into `model`; returns a report (one line per finding).

    Accepts our checkpoints, mmcv/mmseg files (a "state_dict" entry), DDP "module." prefixes,
    and backbone-only weights with or without the "backbone." prefix (ImageNet ResNetV1c).
    Tensors whose shape differs (another number of classes) are skipped and reported.
    """
    state = unwrap_state_dict(read_torch_file(path), keys=("state_dict", "model"))
    if state is None:
        raise PretrainedError(f"{path}: no state dict of tensors found")
    own = model.state_dict()
    if not any(k in own for k in state) and any(f"backbone.{k}" in own for k in state):
        state = {f"backbone.{k}": v for k, v in state.items()}  # bare ResNet keys
    fits = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    if not fits:
        raise PretrainedError(f"{path}: none of its {len(state)} tensors fits the model (its keys look like "
                            f"{next(iter(state))!r}); expected an EMANet checkpoint or ResNetV1c backbone weights")
    model.load_state_dict(fits, strict=False)
    report = [f"loaded {len(fits)} of {len(own)} model tensors from {path}"]
    missing = [k for k in own if k not in fits]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing:
        report.append(f"  not in the file, keep their initialisation: {len(missing)}: {_group(missing)}")
    if unexpected:
        report.append(f"  in the file but not in the model, ignored: {len(unexpected)}: {_group(unexpected)}")
    for k in reshaped[:5]:
        report.append(f"  shape differs, skipped: {k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
    if len(reshaped) > 5:
        report.append(f"  ... {len(reshaped) - 5} more with a different shape")
    return report
