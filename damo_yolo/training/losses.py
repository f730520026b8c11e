"""GFL losses of DAMO-YOLO (reference: damo/base_models/losses/gfocal_loss.py) and the head criterion.

Total = QFL (weight 1, over every prior and class, / #positives) + 2·GIoU + 0.25·DFL (positives, weighted
by their detached max class score, / that weight's sum; DFL also / 4 sides).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .assigner import AlignOTAAssigner
from .boxes import aligned_giou, box_to_distance


def quality_focal_loss(scores: torch.Tensor, labels: torch.Tensor, quality: torch.Tensor,
                       beta: float = 2.0) -> torch.Tensor:
    """Per-prior QFL on probabilities: ``scores`` [N, C], ``labels`` [N] (C or -1 = background),
    ``quality`` [N] target IoU of positives → [N] summed over classes."""
    loss = F.binary_cross_entropy(scores, torch.zeros_like(scores), reduction="none") * scores.pow(beta)
    num_classes = scores.shape[1]
    pos = ((labels >= 0) & (labels < num_classes)).nonzero(as_tuple=True)[0]
    if pos.numel():
        pos_labels = labels[pos].long()
        pos_scores = scores[pos, pos_labels]
        target = quality[pos].to(pos_scores.dtype)
        loss[pos, pos_labels] = (F.binary_cross_entropy(pos_scores, target, reduction="none")
                                 * (target - pos_scores).abs().pow(beta))
    return loss.sum(dim=1)


def distribution_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DFL: ``logits`` [n, reg_max+1] (pre-softmax), ``target`` [n] continuous in [0, reg_max) → [n]."""
    left = target.long()
    right = left + 1
    w_left = right.to(target.dtype) - target
    w_right = target - left.to(target.dtype)
    return (F.cross_entropy(logits, left, reduction="none") * w_left
            + F.cross_entropy(logits, right, reduction="none") * w_right)


def giou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return 1.0 - aligned_giou(pred, target, eps)


def _mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value = value / dist.get_world_size()
    return value


class DAMOYOLOLoss(nn.Module):
    """Assign targets with AlignedOTA and compute the ZeroHead losses for a batch."""

    def __init__(self, num_classes: int, reg_max: int, qfl_weight: float = 1.0, giou_weight: float = 2.0,
                 dfl_weight: float = 0.25, assigner: AlignOTAAssigner | None = None):
        super().__init__()
        self.num_classes, self.reg_max = num_classes, reg_max
        self.qfl_weight, self.giou_weight, self.dfl_weight = qfl_weight, giou_weight, dfl_weight
        self.assigner = assigner or AlignOTAAssigner()

    def forward(self, scores: torch.Tensor, reg_logits: torch.Tensor, boxes: torch.Tensor, priors: torch.Tensor,
                gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``scores`` [B, N, C] sigmoid, ``reg_logits`` [B, N, 4(R+1)], ``boxes`` [B, N, 4] decoded px,
        ``priors`` [N, 3]; GT per image in input pixels."""
        batch, num_priors = scores.shape[:2]
        labels = scores.new_full((batch, num_priors), self.num_classes, dtype=torch.long)
        quality = scores.new_zeros(batch, num_priors)
        box_targets = boxes.new_zeros(batch, num_priors, 4)
        for i in range(batch):
            result = self.assigner.assign(scores[i].detach(), priors, boxes[i].detach(), gt_boxes[i], gt_labels[i])
            pos = result.pos_mask
            labels[i, pos] = result.labels[pos]
            quality[i, pos] = result.max_overlaps[pos]
            box_targets[i, pos] = gt_boxes[i][result.gt_inds[pos] - 1].to(boxes.dtype)

        labels, quality = labels.reshape(-1), quality.reshape(-1)
        flat_scores = scores.reshape(-1, self.num_classes)
        pos = (labels < self.num_classes).nonzero(as_tuple=True)[0]
        num_pos = _mean_over_ranks(torch.tensor(float(pos.numel()), device=scores.device)).clamp(min=1.0)
        loss_qfl = quality_focal_loss(flat_scores, labels, quality).sum() / num_pos

        if pos.numel() == 0:
            zero = (reg_logits.sum() + boxes.sum()) * 0.0  # keeps the graph connected for DDP
            return {"loss_qfl": self.qfl_weight * loss_qfl, "loss_giou": zero, "loss_dfl": zero}

        weights = flat_scores.detach()[pos].max(dim=1).values
        norm = _mean_over_ranks(weights.sum()).clamp(min=1.0)
        pos_boxes = boxes.reshape(-1, 4)[pos]
        pos_targets = box_targets.reshape(-1, 4)[pos]
        loss_giou = (giou_loss(pos_boxes, pos_targets) * weights).sum() / norm

        pos_priors = priors.repeat(batch, 1)[pos]
        stride = pos_priors[:, 2:3]
        dfl_target = box_to_distance(pos_priors[:, :2] / stride, pos_targets / stride, self.reg_max - 0.1)
        pos_logits = reg_logits.reshape(-1, 4 * (self.reg_max + 1))[pos].reshape(-1, self.reg_max + 1)
        loss_dfl = (distribution_focal_loss(pos_logits, dfl_target.reshape(-1))
                    * weights[:, None].expand(-1, 4).reshape(-1)).sum() / (4.0 * norm)
        return {"loss_qfl": self.qfl_weight * loss_qfl, "loss_giou": self.giou_weight * loss_giou,
                "loss_dfl": self.dfl_weight * loss_dfl}
