"""TinyNAS CSP backbone of DAMO-YOLO-M/L (reference: damo/base_models/backbones/tinynas_csp.py).

The five structure entries become four CSP stages (entries 3 and 4 merge into one at stride 16):

    input → Focus (/2) → csp1 (/4) → csp2 (/8) ─► C3 → csp3 (/16) ─► C4 → csp4 (/32, SPP) ─► C5

Each CSP stage: downsample (3x3 s2) → [SPP] → split into a shortcut 1x1 and a 1x1 feeding stride-1
residual blocks of width out/2 → concat → 1x1 fuse. The wrapper's own convs use ReLU (the reference
never overrides their default), the blocks, stem and SPP use the configured SiLU.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import ConvKXBNRELU, Focus, ResConvBlock, SPPBottleneck
from ..zoo import BackboneCfg, StageCfg
from .common import run_and_collect


def _csp_blocks(stage: StageCfg, act: str, reparam: bool) -> list[nn.Module]:
    """Residual blocks of one structure entry: L − 1 of them for a stride-2 entry, all stride 1."""
    width = stage.out_ch // 2
    count = stage.depth - 1 if stage.stride == 2 else stage.depth
    first_kernel = stage.kernel if stage.kxkx else 1
    return [ResConvBlock(stage.in_ch // 2 if (i == 0 and stage.stride == 1) else width, width,
                         stage.bottleneck, stage.kernel, 1, act=act, first_kernel=first_kernel, reparam=reparam)
            for i in range(count)]


class CSPWrapper(nn.Module):
    def __init__(self, stages: tuple[StageCfg, ...], act: str, reparam: bool, with_spp: bool,
                 wrapper_act: str = "relu"):
        super().__init__()
        in_ch, out_ch, hidden = stages[0].in_ch, stages[-1].out_ch, stages[0].out_ch // 2
        self.convstem = nn.ModuleList(b for stage in stages for b in _csp_blocks(stage, act, reparam))
        self.downsampler = ConvKXBNRELU(in_ch, 2 * hidden, 3, 2, act=wrapper_act)
        self.spp = SPPBottleneck(2 * hidden, 2 * hidden) if with_spp else None
        self.conv_start = ConvKXBNRELU(2 * hidden, hidden, 1, 1, act=wrapper_act)
        self.conv_shortcut = ConvKXBNRELU(2 * hidden, out_ch // 2, 1, 1, act=wrapper_act)
        self.conv_fuse = ConvKXBNRELU(out_ch, out_ch, 1, 1, act=wrapper_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsampler(x)
        if self.spp is not None:
            x = self.spp(x)
        shortcut = self.conv_shortcut(x)
        y = self.conv_start(x)
        for block in self.convstem:
            y = block(y)
        return self.conv_fuse(torch.cat([y, shortcut], dim=1))


class TinyNASCSP(nn.Module):
    out_indices = (2, 3, 4)

    def __init__(self, cfg: BackboneCfg):
        super().__init__()
        if len(cfg.stages) != 5:
            raise ValueError(f"the CSP backbone needs 5 structure entries, got {len(cfg.stages)}")
        s = cfg.stages
        groups = [(s[0],), (s[1],), (s[2], s[3]), (s[4],)]
        self.csp_stage = nn.ModuleList([Focus(3, cfg.stem_out, 3, act=cfg.act)] + [
            CSPWrapper(group, cfg.act, cfg.reparam, with_spp=cfg.with_spp and i == len(groups) - 1)
            for i, group in enumerate(groups)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return run_and_collect(self.csp_stage, x, self.out_indices)
