"""ResNetV1c backbone, layer for layer as mmsegmentation's `ResNetV1c` (deep stem, dilated stages).

Module names follow the reference (`stem.0`, `layer1.0.conv1`, `downsample.1`, ...) so that a
reference state_dict loads key for key.
"""

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34). As in the reference, only conv1 is dilated."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn2

    # F.relu, not one nn.ReLU module called at several places: PT2E int8 quantisation
    # (torchao's X86InductorQuantizer) refuses a module whose partition has several outputs.
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity, inplace=True)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 with the stride on the 3x3 (`style='pytorch'`)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample

    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        return F.relu(out + identity, inplace=True)


ARCH: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}

# Output stride -> (strides, dilations) of the four stages.
OUTPUT_STRIDES: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
}


class ResNetV1c(nn.Module):
    """Deep-stem ResNet returning the outputs of its four stages.

    Args:
        depth: 18, 34, 50, 101 or 152.
        stem_channels: output width of the deep stem (its first two convs have half of it).
        base_channels: width of the first stage; each later stage doubles it.
        output_stride: 8 (D8), 16 or 32; stages past stride 8/16 are dilated instead.
        contract_dilation: the first block of a dilated stage uses half the dilation.
    """

    def __init__(self, *, depth: int = 50, stem_channels: int = 64, base_channels: int = 64,
                 output_stride: int = 8, contract_dilation: bool = True) -> None:
        super().__init__()
        if depth not in ARCH:
            raise ValueError(f"ResNet depth must be one of {sorted(ARCH)}, got {depth}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {sorted(OUTPUT_STRIDES)}, got {output_stride}")
        block, blocks = ARCH[depth]
        strides, dilations = OUTPUT_STRIDES[output_stride]
        half = stem_channels // 2
        self.stem = nn.Sequential(
            conv3x3(3, half, stride=2), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            conv3x3(half, half), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            conv3x3(half, stem_channels), nn.BatchNorm2d(stem_channels), nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.out_channels: list[int] = []
        inplanes = stem_channels
        for i in range(4):
            planes = base_channels * 2**i
            layer = _make_layer(block, inplanes, planes, blocks[i], strides[i], dilations[i], contract_dilation)
            self.add_module(f"layer{i + 1}", layer)
            inplanes = planes * block.expansion
            self.out_channels.append(inplanes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reference init without a pretrained file: Kaiming fan_out, BN 1/0, zero-init residual."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_(m.last_norm().weight)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.stem(x))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c1, c2, c3, c4]


def _make_layer(block: type[nn.Module], inplanes: int, planes: int, num_blocks: int, stride: int,
                dilation: int, contract_dilation: bool) -> nn.Sequential:
    out = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
    first_dilation = dilation // 2 if contract_dilation and dilation > 1 else dilation
    layers = [block(inplanes, planes, stride, first_dilation, downsample)]
    layers += [block(out, planes, 1, dilation) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)
