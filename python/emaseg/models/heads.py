"""Decode heads: the EMA head (spec section 3) and the FCN auxiliary head (section 4)."""

import torch
import torch.nn.functional as F
from torch import nn

from .ema import EMAModule


class ConvBNAct(nn.Module):
    """conv -> BN -> ReLU, each part optional; a bias only when there is no BN (as mmcv's ConvModule)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, norm: bool = True, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=not norm)
        self.bn = nn.BatchNorm2d(out_ch) if norm else nn.Identity()
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def _classifier(channels: int, num_classes: int) -> nn.Conv2d:
    conv_seg = nn.Conv2d(channels, num_classes, 1)
    nn.init.normal_(conv_seg.weight, 0, 0.01)
    nn.init.zeros_(conv_seg.bias)
    return conv_seg


class EMAHead(nn.Module):
    """Args:
        in_channels: channels of the backbone's last stage.
        ema_channels: width of the EMA unit.
        channels: width after the EMA unit.
        num_classes: output classes.
        num_bases, num_stages, momentum: of the EMA unit.
        concat_input: fuse the head output with its input through `conv_cat`.
        dropout_ratio: Dropout2d before the classifier.
    """

    def __init__(self, *, in_channels: int, ema_channels: int, channels: int, num_classes: int,
                 num_bases: int, num_stages: int, momentum: float, concat_input: bool,
                 dropout_ratio: float) -> None:
        super().__init__()
        # Creation order matches the reference state_dict order.
        self.conv_seg = _classifier(channels, num_classes)
        self.dropout = nn.Dropout2d(dropout_ratio)
        self.ema_module = EMAModule(channels=ema_channels, num_bases=num_bases, num_stages=num_stages,
                                    momentum=momentum)
        self.ema_in_conv = ConvBNAct(in_channels, ema_channels, 3)
        # Frozen: the EM reconstruction carries no gradient, so this conv could never learn.
        self.ema_mid_conv = ConvBNAct(ema_channels, ema_channels, 1, norm=False, act=False)
        for p in self.ema_mid_conv.parameters():
            p.requires_grad = False
        self.ema_out_conv = ConvBNAct(ema_channels, ema_channels, 1, act=False)
        self.bottleneck = ConvBNAct(ema_channels, channels, 3)
        self.concat_input = concat_input
        self.conv_cat = ConvBNAct(in_channels + channels, channels, 3) if concat_input else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.ema_in_conv(x)                      # (B, E, h, w)
        identity = feats
        recon = self.ema_module(self.ema_mid_conv(feats))  # (B, E, h, w), no gradient
        recon = self.ema_out_conv(F.relu(recon))
        out = self.bottleneck(F.relu(identity + recon))  # (B, channels, h, w)
        if self.concat_input:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.conv_seg(self.dropout(out))          # (B, num_classes, h, w)


class FCNHead(nn.Module):
    """One 3x3 conv + classifier on layer3; only feeds the auxiliary training loss."""

    def __init__(self, *, in_channels: int, channels: int, num_classes: int, dropout_ratio: float) -> None:
        super().__init__()
        self.conv_seg = _classifier(channels, num_classes)
        self.dropout = nn.Dropout2d(dropout_ratio)
        self.convs = nn.Sequential(ConvBNAct(in_channels, channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.convs(x)))
