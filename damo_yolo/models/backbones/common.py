"""Pieces the TinyNAS backbones share: a stage as a list of blocks, and feature collection by index."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..layers import SPPBottleneck
from ..zoo import StageCfg


class BlockStage(nn.Module):
    """``stage.depth`` blocks made by ``make_block(in_ch, stride)``, with SPP right after block 0 if asked
    (the reference's placement in the last stage). State-dict names: ``block_list.{i}``."""

    def __init__(self, stage: StageCfg, make_block: Callable[[int, int], nn.Module], with_spp: bool):
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(stage.depth):
            blocks.append(make_block(stage.in_ch if i == 0 else stage.out_ch, stage.stride if i == 0 else 1))
            if i == 0 and with_spp:
                blocks.append(SPPBottleneck(stage.out_ch, stage.out_ch))
        self.block_list = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block_list:
            x = block(x)
        return x


def run_and_collect(stages: nn.ModuleList, x: torch.Tensor, out_indices: tuple[int, ...]) -> list[torch.Tensor]:
    """Run ``stages`` in order and return the outputs of ``out_indices`` (strides 8, 16, 32)."""
    outs = []
    for i, stage in enumerate(stages):
        x = stage(x)
        if i in out_indices:
            outs.append(x)
    return outs
