"""TinyNAS mobile backbone of the DAMO-YOLO Nano models (reference: damo/base_models/backbones/tinynas_mob.py).

Stages of MobileNetV3-style inverted residuals (dw 5x5, expansion 3.5 + 0.5·(stage − 1), no SE);
the stem is a stride-2 3x3 conv (Focus for the older N). Outputs at strides 8, 16, 32.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..layers import ConvKXBNRELU, Focus, InvertedResidual, make_divisible
from ..zoo import BackboneCfg, StageCfg
from .common import BlockStage, run_and_collect


def _mobile_stage(stage: StageCfg, stage_index: int, act: str, with_spp: bool) -> BlockStage:
    expansion = 3.5 + 0.5 * (stage_index - 1)
    hidden = make_divisible(math.ceil(stage.out_ch * expansion), 8)
    return BlockStage(stage, lambda in_ch, stride: InvertedResidual(in_ch, stage.out_ch, hidden, stride, act=act),
                      with_spp)


class TinyNASMobile(nn.Module):
    out_indices = (2, 4, 5)

    def __init__(self, cfg: BackboneCfg):
        super().__init__()
        if cfg.use_focus:
            stem = Focus(3, cfg.stem_out, 3, act=cfg.act)
        else:  # the structure file says stride 1; the reference hard-codes 2
            stem = ConvKXBNRELU(3, cfg.stem_out, 3, 2, act=cfg.act)
        last = len(cfg.stages) - 1
        self.block_list = nn.ModuleList([stem] + [
            _mobile_stage(stage, i + 1, cfg.act, cfg.with_spp and i == last) for i, stage in enumerate(cfg.stages)])
        self.init_weights()

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 1.0 / m.weight.shape[1])
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.constant_(m.bias, 1e-4)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return run_and_collect(self.block_list, x, self.out_indices)
