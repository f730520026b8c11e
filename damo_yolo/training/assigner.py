"""AlignedOTA label assignment of DAMO-YOLO (reference: damo/base_models/core/ota_assigner.py).

Per image, on detached predictions: candidates are priors inside a GT box or within 2.5 strides of its
centre; the cost of a (prior, GT) pair is a QFL-style classification cost against the IoU-weighted one-hot
label, plus 3·(−log IoU), plus a huge penalty unless the prior is both inside the box and near its centre;
each GT takes its dynamic-k cheapest priors (k = ⌊Σ top-10 IoUs⌋ ≥ 1); a prior claimed twice keeps the
cheaper GT.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .boxes import pairwise_iou


@dataclass
class AssignResult:
    gt_inds: torch.Tensor  # [N] long: 0 = negative, i + 1 = matched to GT i
    labels: torch.Tensor  # [N] long: class of the matched GT, -1 for negatives
    max_overlaps: torch.Tensor  # [N] float: IoU of the prediction with its matched GT (0 for negatives)

    @property
    def pos_mask(self) -> torch.Tensor:
        return self.gt_inds > 0


class AlignOTAAssigner:
    def __init__(self, center_radius: float = 2.5, candidate_topk: int = 10, iou_weight: float = 3.0,
                 cls_weight: float = 1.0):
        self.center_radius, self.candidate_topk = center_radius, candidate_topk
        self.iou_weight, self.cls_weight = iou_weight, cls_weight

    @torch.no_grad()
    def assign(self, scores: torch.Tensor, priors: torch.Tensor, boxes: torch.Tensor, gt_boxes: torch.Tensor,
               gt_labels: torch.Tensor) -> AssignResult:
        """Args: ``scores`` [N, C] probabilities, ``priors`` [N, 3] (x, y, stride), ``boxes`` [N, 4] decoded
        predictions (xyxy px), ``gt_boxes`` [G, 4], ``gt_labels`` [G]."""
        num_priors = priors.shape[0]
        gt_inds = torch.zeros(num_priors, dtype=torch.long, device=priors.device)
        labels = torch.full((num_priors,), -1, dtype=torch.long, device=priors.device)
        overlaps = torch.zeros(num_priors, dtype=scores.dtype, device=priors.device)
        if gt_boxes.numel() == 0 or num_priors == 0:
            return AssignResult(gt_inds, labels, overlaps)

        valid, in_box_and_center = self._candidates(priors, gt_boxes)
        if not valid.any():
            return AssignResult(gt_inds, labels, overlaps)
        valid_scores, valid_boxes = scores[valid].float(), boxes[valid].float()
        ious = pairwise_iou(valid_boxes, gt_boxes.float())  # [V, G]
        iou_cost = -torch.log(ious + 1e-7)

        num_classes = scores.shape[1]
        soft_label = F.one_hot(gt_labels.long(), num_classes).float()[None] * ious[..., None]  # [V, G, C]
        pred = valid_scores[:, None, :].expand_as(soft_label)
        cls_cost = (F.binary_cross_entropy(pred, soft_label, reduction="none")
                    * (soft_label - pred).abs().pow(2.0)).sum(-1)
        cost = self.cls_weight * cls_cost + self.iou_weight * iou_cost + 1e8 * (~in_box_and_center).float()

        matched_ious, matched_gt = self._dynamic_k_matching(cost, ious, valid)
        gt_inds[valid] = matched_gt + 1
        labels[valid] = gt_labels.long()[matched_gt]
        overlaps[valid] = matched_ious.to(overlaps.dtype)
        return AssignResult(gt_inds, labels, overlaps)

    def _candidates(self, priors: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """valid [N]: in any GT box or centre region; in_box_and_center [V, G] for the valid priors."""
        x, y, stride = priors[:, 0:1], priors[:, 1:2], priors[:, 2:3]
        in_box = torch.stack([x - gt[:, 0], y - gt[:, 1], gt[:, 2] - x, gt[:, 3] - y], -1).min(-1).values > 0
        cx, cy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
        r = self.center_radius * stride
        in_center = torch.stack([x - (cx - r), y - (cy - r), (cx + r) - x, (cy + r) - y], -1).min(-1).values > 0
        valid = in_box.any(1) | in_center.any(1)
        return valid, in_box[valid] & in_center[valid]

    def _dynamic_k_matching(self, cost: torch.Tensor, ious: torch.Tensor, valid: torch.Tensor):
        matching = torch.zeros_like(cost)
        topk = min(self.candidate_topk, ious.shape[0])
        dynamic_ks = torch.topk(ious, topk, dim=0).values.sum(0).int().clamp(min=1)
        for g in range(cost.shape[1]):
            _, idx = torch.topk(cost[:, g], k=int(dynamic_ks[g]), largest=False)
            matching[idx, g] = 1.0
        claimed_twice = matching.sum(1) > 1
        if claimed_twice.any():
            cheapest = cost[claimed_twice].argmin(1)
            matching[claimed_twice] = 0.0
            matching[claimed_twice, cheapest] = 1.0
        fg = matching.sum(1) > 0
        valid[valid.clone()] = fg  # in place: the valid priors that ended up matched
        matched_gt = matching[fg].argmax(1)
        matched_ious = (matching * ious).sum(1)[fg]
        return matched_ious, matched_gt
