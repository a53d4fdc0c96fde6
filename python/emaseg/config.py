"""Named configurations as plain dataclasses.

Every number the reference mmsegmentation configs hold lives here, visible in one place
(`../shared/reference/emanet_architecture.md` sections 0-8). A config prints as JSON and any
field can be overridden with `key.sub=value` strings (`--set` on the command line).
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    depth: int = 50                       # ResNetV1c depth: 18, 34, 50, 101, 152
    stem_channels: int = 64               # deep stem: 3 -> stem/2 -> stem/2 -> stem
    base_channels: int = 64               # width of layer1 (planes); doubles per stage
    output_stride: int = 8                # 8 (D8: dilations 1,1,2,4) or 16 (1,1,1,2)
    contract_dilation: bool = True        # first block of a dilated stage uses dilation // 2
    num_classes: int = 19
    channels: int = 256                   # head width after the EMA unit
    ema_channels: int = 512
    num_bases: int = 64
    num_stages: int = 3                   # EM iterations
    momentum: float = 0.1                 # moving average of the bases in training
    concat_input: bool = True             # EMAHead conv_cat over [layer4, head output]
    dropout_ratio: float = 0.1
    align_corners: bool = False
    aux_head: bool = True                 # FCN auxiliary head on layer3 (training only)
    aux_channels: int = 256


@dataclass
class DataConfig:
    dataset: str = "cityscapes"           # cityscapes | folder | voc12aug | pascal_context | coco_stuff164k | ade20k | synthetic
    # mmcv "keep ratio" scale: the image is scaled so that its long edge <= max(scale) and
    # its short edge <= min(scale), whichever is tighter.
    scale: tuple[int, int] = (2048, 1024)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    crop_size: tuple[int, int] = (512, 1024)   # (H, W)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    test_scale: tuple[int, int] = (2048, 1024)
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)   # RGB
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    bgr_to_rgb: bool = True
    ignore_index: int = 255
    num_workers: int = 2
    # Rare-class sampling of training images (DAFormer, Hoyer et al. 2022): draw a class c with
    # probability softmax((1 - f_c) / temperature), f_c its pixel share, then an image holding at
    # least rcs_min_pixels of c. Off: every image once per epoch, the reference's sampler.
    rare_class_sampling: bool = False
    rcs_temperature: float = 0.01
    rcs_min_pixels: int = 3000


@dataclass
class LossConfig:
    # mmseg CrossEntropyLoss(class_weight=...): one weight per class, () for none.
    class_weight: tuple[float, ...] = ()
    # mmseg OHEMPixelSampler on the decode head: off, or on with thresh (None: the min_kept
    # pixels of largest loss) and min_kept per image.
    ohem: bool = False
    ohem_thresh: float | None = None
    ohem_min_kept: int = 100000


@dataclass
class TestConfig:
    mode: str = "whole"                   # whole | slide
    crop_size: tuple[int, int] = (769, 769)    # slide window (H, W)
    stride: tuple[int, int] = (513, 513)
    aug_ratios: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    aug_flip: bool = True


@dataclass
class ScheduleConfig:
    iters: int = 80000
    batch_size: int = 2                   # per process; the reference runs 4 GPUs x 2
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0005
    poly_power: float = 0.9
    min_lr: float = 1e-4
    aux_weight: float = 0.4
    val_interval: int = 8000
    checkpoint_interval: int = 8000
    log_interval: int = 50


@dataclass
class Config:
    name: str = "emanet_r50-d8_512x1024_80k_cityscapes"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    test: TestConfig = field(default_factory=TestConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Config":
        return _from_dict(Config, d)

    def override(self, assignments: list[str]) -> "Config":
        """Returns a copy with `section.key=value` assignments applied (values parsed as JSON)."""
        cfg = copy.deepcopy(self)
        for item in assignments:
            if "=" not in item:
                raise ValueError(f"--set expects key=value, got {item!r}")
            key, raw = item.split("=", 1)
            parts = key.strip().split(".")
            target: Any = cfg
            for p in parts[:-1]:
                if not dataclasses.is_dataclass(target) or not hasattr(target, p):
                    raise ValueError(f"unknown config key {key!r}")
                target = getattr(target, p)
            leaf = parts[-1]
            if not dataclasses.is_dataclass(target) or leaf not in {f.name for f in dataclasses.fields(target)}:
                raise ValueError(f"unknown config key {key!r}")
            old = getattr(target, leaf)
            if dataclasses.is_dataclass(old):
                raise ValueError(f"config key {key!r} is a section; set one of its fields")
            setattr(target, leaf, _coerce(raw, old, key))
        return cfg


def _coerce(raw: str, old: Any, key: str) -> Any:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # bare strings: --set data.dataset=folder
    if isinstance(old, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{key} expects true/false, got {raw!r}")
        return value
    if isinstance(old, int) and not isinstance(old, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} expects an integer, got {raw!r}")
        return value
    if isinstance(old, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} expects a number, got {raw!r}")
        return float(value)
    if isinstance(old, tuple):
        if not isinstance(value, list) or len(value) == 0:
            raise ValueError(f"{key} expects a JSON list like [512,1024], got {raw!r}")
        return tuple(value)
    if isinstance(old, str):
        return str(value)
    return value


def _from_dict(cls: type, d: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    known = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in d.items():
        if k not in known:
            raise ValueError(f"unknown config field {cls.__name__}.{k}")
        sub = _SECTIONS.get(k) if cls is Config else None
        if sub is not None:
            kwargs[k] = _from_dict(sub, v)
        elif isinstance(v, list):
            kwargs[k] = tuple(v)
        else:
            kwargs[k] = v
    return cls(**kwargs)


_SECTIONS: dict[str, type] = {
    "model": ModelConfig, "data": DataConfig, "test": TestConfig, "loss": LossConfig, "schedule": ScheduleConfig,
}


# ----------------------------------------------------------------------------- named configs

def _cityscapes(depth: int, crop: str) -> Config:
    name = f"emanet_r{depth}-d8_{crop}_80k_cityscapes"
    if crop == "512x1024":
        return Config(name=name, model=ModelConfig(depth=depth))
    # 769x769 recipe: align_corners=True in both heads, sliding-window test (section 8).
    return Config(
        name=name,
        model=ModelConfig(depth=depth, align_corners=True),
        data=DataConfig(scale=(2049, 1025), crop_size=(769, 769), test_scale=(2049, 1025)),
        test=TestConfig(mode="slide", crop_size=(769, 769), stride=(513, 513)),
    )


def _voc12aug() -> Config:
    # The paper's VOC recipe (spec section 10): crop 513, batch 16, 30k iters, lr 0.009, wd 1e-4.
    return Config(
        name="emanet_r101-d8_513x513_30k_voc12aug",
        model=ModelConfig(depth=101, num_classes=21, align_corners=True),
        data=DataConfig(dataset="voc12aug", scale=(2048, 512), crop_size=(513, 513), test_scale=(2048, 512)),
        schedule=ScheduleConfig(iters=30000, batch_size=16, lr=0.009, weight_decay=1e-4,
                                val_interval=3000, checkpoint_interval=3000),
    )


def _small(name: str, depth: int, stem: int, base: int, ema: int, bases: int, channels: int,
           crop: tuple[int, int], scale: tuple[int, int]) -> Config:
    """Narrow D8 models for CPUs, edge boxes and tests, trained on generated street scenes."""
    return Config(
        name=name,
        model=ModelConfig(depth=depth, stem_channels=stem, base_channels=base, channels=channels,
                          ema_channels=ema, num_bases=bases, aux_channels=channels),
        data=DataConfig(dataset="synthetic", scale=scale, crop_size=crop, test_scale=scale, num_workers=1),
        schedule=ScheduleConfig(iters=2000, batch_size=8, lr=0.01, val_interval=500,
                                checkpoint_interval=500, log_interval=20),
    )


CONFIGS: dict[str, Config] = {
    c.name: c
    for c in (
        _cityscapes(50, "512x1024"), _cityscapes(101, "512x1024"),
        _cityscapes(50, "769x769"), _cityscapes(101, "769x769"),
        _voc12aug(),
        # Demo / edge model: R-18 at width 16, EMA 64 channels, 32 bases; 256x512 inputs.
        _small("emanet_r18w16-d8_256x512_synthetic", 18, 16, 16, 64, 32, 64, (256, 512), (512, 256)),
        # Test model: tiny and fast, used by the unit and end-to-end tests.
        _small("emanet_r18w8-d8_128x256_synthetic", 18, 8, 8, 32, 16, 32, (128, 256), (256, 128)),
    )
}


def get_config(name: str) -> Config:
    """A fresh copy of a named configuration."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; known: {', '.join(sorted(CONFIGS))}")
    return copy.deepcopy(CONFIGS[name])


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """"schedule.lr: 0.01 -> 0.02" for each leaf that differs between two config dicts."""
    diffs = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_differences(a, b, f"{prefix}{k}.")
        elif (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
            diffs.append(f"{prefix}{k}: {a} -> {b}")
    return diffs
