"""DAMO-YOLO: TinyNAS backbone → RepGFPN neck → ZeroHead.

Eval forward (the contract every stage relies on): float32 [B, 3, H, W] RGB in 0–255 (no mean/std;
H, W multiples of 32) → ``scores`` [B, N, C] (sigmoid) and ``boxes`` [B, N, 4] (x1, y1, x2, y2 in input
pixels), N = Σ_s (H/s)(W/s) over strides 8, 16, 32 — what the reference's ONNX converter exports.
"""
from __future__ import annotations

import torch
from torch import nn

from .backbones import build_backbone
from .heads import ZeroHead
from .layers import RepConv, init_batch_norms, reparameterize_model
from .necks import GiraffeNeckV2
from .zoo import ModelCfg


class DAMOYOLO(nn.Module):
    def __init__(self, cfg: ModelCfg, num_classes: int = 80):
        super().__init__()
        self.cfg, self.num_classes = cfg, num_classes
        self.backbone = build_backbone(cfg.backbone)
        self.neck = GiraffeNeckV2(cfg.backbone.out_channels, cfg.neck_out_channels, cfg.neck_depth,
                                  cfg.neck_hidden_ratio, cfg.neck_act, cfg.neck_depthwise)
        self.head = ZeroHead(num_classes, cfg.neck_out_channels, cfg.reg_max, cfg.head_kernel, cfg.strides)
        init_batch_norms(self)

    def extract_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Neck outputs at strides 8, 16, 32 (what distillation aligns)."""
        return self.neck(self.backbone(images))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.extract_features(images))

    def switch_to_deploy(self) -> "DAMOYOLO":
        """Fuse every RepConv (in place); the outputs stay the same up to float rounding."""
        return reparameterize_model(self)

    @property
    def is_deployed(self) -> bool:
        return all(m.deploy for m in self.modules() if isinstance(m, RepConv))
