"""ZeroHead of DAMO-YOLO (reference: damo/base_models/heads/zero_head.py), GFL-style.

Per level: a sigmoid class-score conv and a box-distribution conv (4 sides × reg_max+1 bins, scaled by a
learnable scalar before the softmax). The expectation over the bins is a distance in grid units; times the
stride it is a distance in pixels from the level's prior points (c·s, r·s), which sit on cell corners
(no half-stride offset).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Scale(nn.Module):
    """A learnable scalar multiplier."""

    def __init__(self, value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Integral(nn.Module):
    """Expected value of a softmax distribution over the bins 0..reg_max, per box side."""

    def __init__(self, reg_max: int):
        super().__init__()
        self.reg_max = reg_max
        self.register_buffer("project", torch.linspace(0, reg_max, reg_max + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1]
        x = F.softmax(x.reshape(*shape, 4, self.reg_max + 1), dim=-1)
        return F.linear(x, self.project.type_as(x).unsqueeze(0)).reshape(*shape, 4)


def make_priors(sizes: list[tuple[int, int]], strides: tuple[int, ...], device=None,
                dtype=torch.float32) -> torch.Tensor:
    """Prior points [N, 3] = (x, y, stride) for feature maps of ``sizes`` (H, W), row-major per level."""
    priors = []
    for (h, w), stride in zip(sizes, strides):
        ys = torch.arange(h, device=device, dtype=dtype) * stride
        xs = torch.arange(w, device=device, dtype=dtype) * stride
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        priors.append(torch.stack([xx.reshape(-1), yy.reshape(-1), torch.full_like(xx.reshape(-1), stride)], -1))
    return torch.cat(priors, dim=0)


def distance_to_box(points: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """(x, y) and (left, top, right, bottom) → (x1, y1, x2, y2)."""
    return torch.cat([points - distances[..., :2], points + distances[..., 2:]], dim=-1)


class ZeroHead(nn.Module):
    def __init__(self, num_classes: int, in_channels: tuple[int, ...], reg_max: int = 16, kernel: int = 3,
                 strides: tuple[int, ...] = (8, 16, 32)):
        super().__init__()
        self.num_classes, self.reg_max, self.strides = num_classes, reg_max, tuple(strides)
        self.integral = Integral(reg_max)
        # stacked_convs = 0 in every reference config: the towers exist but are empty
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.gfl_cls = nn.ModuleList(nn.Conv2d(c, num_classes, kernel, padding=kernel // 2) for c in in_channels)
        self.gfl_reg = nn.ModuleList(nn.Conv2d(c, 4 * (reg_max + 1), kernel, padding=kernel // 2)
                                     for c in in_channels)
        self.scales = nn.ModuleList(Scale(1.0) for _ in in_channels)
        self.init_weights()

    def init_weights(self, prior_prob: float = 0.01) -> None:
        for conv in list(self.gfl_cls) + list(self.gfl_reg):
            nn.init.normal_(conv.weight, 0, 0.01)
            nn.init.zeros_(conv.bias)
        for conv in self.gfl_cls:
            nn.init.constant_(conv.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward_raw(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scores [B, N, C] (sigmoid), box-distribution logits [B, N, 4·(reg_max+1)] and priors [N, 3]."""
        scores, reg_logits = [], []
        for x, cls_conv, reg_conv, scale in zip(feats, self.gfl_cls, self.gfl_reg, self.scales):
            scores.append(cls_conv(x).sigmoid().flatten(2).transpose(1, 2))
            reg_logits.append(scale(reg_conv(x)).flatten(2).transpose(1, 2))
        priors = make_priors([tuple(f.shape[2:]) for f in feats], self.strides, feats[0].device, feats[0].dtype)
        return torch.cat(scores, 1), torch.cat(reg_logits, 1), priors

    def decode(self, reg_logits: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """Box-distribution logits → x1, y1, x2, y2 in input pixels."""
        distances = self.integral(reg_logits) * priors[:, 2:3]
        return distance_to_box(priors[:, :2], distances)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        scores, reg_logits, priors = self.forward_raw(feats)
        return scores, self.decode(reg_logits, priors)
