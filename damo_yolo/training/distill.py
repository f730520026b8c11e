"""Feature distillation of DAMO-YOLO (reference: damo/base_models/losses/distill_loss.py, ``cwd``).

For each neck level the student feature goes through a 1x1 conv to the teacher's width; both pass a
BatchNorm without affine parameters; channel-wise distillation (CWD) takes, per channel, the softmax over
positions and sums KL(teacher ‖ student), divided by channels × batch, times τ². The weight decays from
1.0 to 0.1 along a cosine over the whole run.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..models import build_model, load_checkpoint


def channel_wise_distillation(student: torch.Tensor, teacher: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    n, c = student.shape[:2]
    log_p_student = F.log_softmax(student.reshape(n * c, -1) / tau, dim=1)
    p_teacher = F.softmax(teacher.reshape(n * c, -1) / tau, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="sum") * tau ** 2 / (n * c)


def distill_weight(progress: float, start: float = 1.0, end: float = 0.1) -> float:
    """Cosine decay of the distillation weight over training progress in [0, 1]."""
    return start + (end - start) * (1 - math.cos(math.pi * min(max(progress, 0.0), 1.0))) / 2


class FeatureDistiller(nn.Module):
    """Align convs + norms per level; call with student and teacher neck features → the CWD loss."""

    def __init__(self, student_channels, teacher_channels, tau: float = 1.0, loss_weight: float = 1.0):
        super().__init__()
        self.align = nn.ModuleList(nn.Conv2d(s, t, 1) for s, t in zip(student_channels, teacher_channels))
        self.norms = nn.ModuleList(nn.BatchNorm2d(t, affine=False) for t in teacher_channels)
        self.tau, self.loss_weight = tau, loss_weight

    def forward(self, student_feats, teacher_feats) -> torch.Tensor:
        loss = 0.0
        for s, t, align, norm in zip(student_feats, teacher_feats, self.align, self.norms):
            loss = loss + channel_wise_distillation(norm(align(s)), norm(t), self.tau)
        return self.loss_weight * loss


def load_teacher(config: str, checkpoint: str) -> nn.Module:
    """A frozen teacher detector from its training config (variant, classes) and a checkpoint."""
    from .config import load_config
    if not Path(config).is_file():
        raise FileNotFoundError(f"teacher config not found: {config}")
    model_cfg = load_config(config).model
    teacher = build_model(model_cfg["variant"], model_cfg.get("num_classes", 80))
    load_checkpoint(teacher, checkpoint)
    return teacher.eval().requires_grad_(False)
