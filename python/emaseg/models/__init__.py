"""EMANet building blocks: backbone, EMA unit, heads, segmentor."""
from .backbone import ResNetV1c
from .ema import EMAModule
from .heads import EMAHead, FCNHead
from .segmentor import EMANet, build_model

__all__ = ["ResNetV1c", "EMAModule", "EMAHead", "FCNHead", "EMANet", "build_model"]
