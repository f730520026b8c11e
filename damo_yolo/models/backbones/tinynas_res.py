"""TinyNAS residual backbone of DAMO-YOLO-T/S (reference: damo/base_models/backbones/tinynas_res.py).

    input → Focus (/2) → stage1 (/4) → stage2 (/8) ─► C3
                       → stage3 (/16) → stage4 (/16) ─► C4
                       → stage5 (/32, SPP after its first block) ─► C5
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import ConvKXBNRELU, Focus, ResConvBlock, SPPBottleneck
from ..zoo import BackboneCfg, StageCfg


class SuperResStem(nn.Module):
    """One TinyNAS stage of ResConvBlocks (the first one strided), optionally with SPP after block 0."""

    def __init__(self, stage: StageCfg, act: str, reparam: bool, with_spp: bool):
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(stage.depth):
            blocks.append(ResConvBlock(
                stage.in_ch if i == 0 else stage.out_ch, stage.out_ch, stage.bottleneck, stage.kernel,
                stage.stride if i == 0 else 1, act=act, first_kernel=stage.kernel if stage.kxkx else 1,
                reparam=reparam))
            if i == 0 and with_spp:
                blocks.append(SPPBottleneck(stage.out_ch, stage.out_ch))
        self.block_list = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block_list:
            x = block(x)
        return x


class TinyNASRes(nn.Module):
    """Returns the features of strides 8, 16, 32 (stage2, stage4, stage5)."""

    out_indices = (2, 4, 5)

    def __init__(self, cfg: BackboneCfg):
        super().__init__()
        if cfg.use_focus:
            stem = Focus(3, cfg.stem_out, 3, act=cfg.act)
        else:
            stem = ConvKXBNRELU(3, cfg.stem_out, 3, 1, act=cfg.act)
        last = len(cfg.stages) - 1
        self.block_list = nn.ModuleList([stem] + [
            SuperResStem(stage, cfg.act, cfg.reparam, cfg.with_spp and i == last)
            for i, stage in enumerate(cfg.stages)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, block in enumerate(self.block_list):
            x = block(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
