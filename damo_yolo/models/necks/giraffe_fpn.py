"""RepGFPN neck of DAMO-YOLO: GiraffeNeckV2 (reference: damo/base_models/necks/giraffe_fpn_btn.py).

Inputs C3, C4, C5 (strides 8, 16, 32); every fusion node is a CSPStage over a channel concatenation:

    x3 = merge_3[C5, down(C4)]                   /32
    x4 = merge_4[C4, down(C3), up(x3)]           /16
    x5 = merge_5[C3, up(x4)]                     /8   → P3
    x7 = merge_7[x4, down(x5)]                   /16  → P4
    x6 = merge_6[x3, down(x4), down(x7)]         /32  → P5
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvBNAct, DepthwiseConv, InvertedResidual, RepConv, make_divisible


class BasicBlock3x3Reverse(nn.Module):
    """x + ConvBNAct3x3(RepConv3x3(x)): the RepConv (``conv2``) runs first, no act after the add."""

    def __init__(self, channels: int, hidden_ratio: float, act: str):
        super().__init__()
        hidden = int(channels * hidden_ratio)
        self.conv1 = ConvBNAct(hidden, channels, 3, 1, act=act)
        self.conv2 = RepConv(channels, hidden, 3, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(self.conv2(x))


class DepthwiseBlock(nn.Module):
    """The Nano neck block: an inverted residual (expansion 3, dw 5x5) with its shortcut."""

    def __init__(self, channels: int, act: str):
        super().__init__()
        hidden = make_divisible(math.ceil(channels * 3.0), 8)
        self.conv = InvertedResidual(channels, channels, hidden, 1, act=act, with_se_slot=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class CSPStage(nn.Module):
    """conv1 → y1; conv2 → n blocks in sequence; conv3 over [y1, every block output]."""

    def __init__(self, in_ch: int, out_ch: int, num_blocks: int, hidden_ratio: float, act: str, depthwise: bool):
        super().__init__()
        first = out_ch // 2
        mid = out_ch - first
        self.conv1 = ConvBNAct(in_ch, first, 1, act=act)
        self.conv2 = ConvBNAct(in_ch, mid, 1, act=act)
        self.convs = nn.Sequential(*[
            DepthwiseBlock(mid, act) if depthwise else BasicBlock3x3Reverse(mid, hidden_ratio, act)
            for _ in range(num_blocks)])
        self.conv3 = ConvBNAct(mid * num_blocks + first, out_ch, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.conv1(x)]
        y = self.conv2(x)
        for block in self.convs:
            y = block(y)
            outs.append(y)
        return self.conv3(torch.cat(outs, dim=1))


class GiraffeNeckV2(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int], out_channels: tuple[int, int, int], depth: float = 1.0,
                 hidden_ratio: float = 1.0, act: str = "silu", depthwise: bool = False):
        super().__init__()
        i0, i1, i2 = in_channels
        o0, o1, o2 = out_channels
        n = round(3 * depth)  # Python's round: 4 for depth 1.5, 2 for 0.5

        def down(ch: int) -> nn.Module:
            return DepthwiseConv(ch, ch, 3, 2, act=act) if depthwise else ConvBNAct(ch, ch, 3, 2, act=act)

        def stage(cin: int, cout: int) -> CSPStage:
            return CSPStage(cin, cout, n, hidden_ratio, act, depthwise)

        self.bu_conv13 = down(i1)
        self.merge_3 = stage(i1 + i2, i2)
        self.bu_conv24 = down(i0)
        self.merge_4 = stage(i0 + i1 + i2, i1)
        self.merge_5 = stage(i1 + i0, o0)
        self.bu_conv57 = down(o0)
        self.merge_7 = stage(o0 + i1, o1)
        self.bu_conv46 = down(i1)
        self.bu_conv76 = down(o1)
        self.merge_6 = stage(i1 + o1 + i2, o2)

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        c3, c4, c5 = feats                                                # /8, /16, /32
        x3 = self.merge_3(torch.cat([c5, self.bu_conv13(c4)], 1))           # i2+i1 → i2, /32
        x4 = self.merge_4(torch.cat([c4, self.bu_conv24(c3), self._up(x3)], 1))  # i1+i0+i2 → i1, /16
        x5 = self.merge_5(torch.cat([c3, self._up(x4)], 1))                 # i0+i1 → o0, /8
        x7 = self.merge_7(torch.cat([x4, self.bu_conv57(x5)], 1))           # i1+o0 → o1, /16
        x6 = self.merge_6(torch.cat([x3, self.bu_conv46(x4), self.bu_conv76(x7)], 1))  # i2+i1+o1 → o2, /32
        return [x5, x7, x6]
