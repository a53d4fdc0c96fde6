"""EMANet: ResNetV1c backbone + EMA head (+ FCN auxiliary head while training)."""

import torch
from torch import nn

from ..config import Config, ModelConfig
from .backbone import ResNetV1c
from .heads import EMAHead, FCNHead


class EMANet(nn.Module):
    """Returns `{"out": logits at 1/8}`; in training also `"aux"`. The loss lives outside.

    Input: normalised float images (B, 3, H, W). State-dict keys equal the reference's.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.align_corners = cfg.align_corners
        self.backbone = ResNetV1c(depth=cfg.depth, stem_channels=cfg.stem_channels,
                                  base_channels=cfg.base_channels, output_stride=cfg.output_stride,
                                  contract_dilation=cfg.contract_dilation)
        c3, c4 = self.backbone.out_channels[2], self.backbone.out_channels[3]
        self.decode_head = EMAHead(in_channels=c4, ema_channels=cfg.ema_channels, channels=cfg.channels,
                                   num_classes=cfg.num_classes, num_bases=cfg.num_bases,
                                   num_stages=cfg.num_stages, momentum=cfg.momentum,
                                   concat_input=cfg.concat_input, dropout_ratio=cfg.dropout_ratio)
        self.has_aux = cfg.aux_head
        self.auxiliary_head = (FCNHead(in_channels=c3, channels=cfg.aux_channels, num_classes=cfg.num_classes,
                                       dropout_ratio=cfg.dropout_ratio) if cfg.aux_head else nn.Identity())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(x)
        out = {"out": self.decode_head(feats[3])}
        if self.training and self.has_aux:
            out["aux"] = self.auxiliary_head(feats[2])
        return out


def build_model(cfg: Config | ModelConfig) -> EMANet:
    """Builds a freshly initialised EMANet (reference init) from a config or its model section."""
    return EMANet(cfg.model if isinstance(cfg, Config) else cfg)
