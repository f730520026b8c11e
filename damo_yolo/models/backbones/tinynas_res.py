"""TinyNAS residual backbone of DAMO-YOLO-T/S (reference: damo/base_models/backbones/tinynas_res.py).

    input → Focus (/2) → stage1 (/4) → stage2 (/8) ─► C3
                       → stage3 (/16) → stage4 (/16) ─► C4
                       → stage5 (/32, SPP after its first block) ─► C5
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ..layers import ConvKXBNRELU, Focus, ResConvBlock
from ..zoo import BackboneCfg, StageCfg
from .common import BlockStage, run_and_collect


def _res_block(stage: StageCfg, cfg: BackboneCfg, in_ch: int, stride: int) -> ResConvBlock:
    return ResConvBlock(in_ch, stage.out_ch, stage.bottleneck, stage.kernel, stride, act=cfg.act,
                        first_kernel=stage.kernel if stage.kxkx else 1, reparam=cfg.reparam)


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
            BlockStage(stage, partial(_res_block, stage, cfg), cfg.with_spp and i == last)
            for i, stage in enumerate(cfg.stages)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return run_and_collect(self.block_list, x, self.out_indices)
