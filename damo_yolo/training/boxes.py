"""Box utilities shared by the assigner, the losses and evaluation (xyxy boxes)."""
from __future__ import annotations

import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def pairwise_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """IoU of every box in ``a`` [N, 4] with every box in ``b`` [M, 4] → [N, M]."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp(min=eps)


def aligned_giou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Generalised IoU of matching rows of ``a`` and ``b`` [N, 4] → [N]."""
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = (box_area(a) + box_area(b) - inter).clamp(min=eps)
    iou = inter / union
    enclose = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(-1).clamp(min=eps)
    return iou - (enclose - union) / enclose


def box_to_distance(points: torch.Tensor, boxes: torch.Tensor, max_distance: float) -> torch.Tensor:
    """(x, y) and (x1, y1, x2, y2) → (left, top, right, bottom), clamped to [0, max_distance]."""
    d = torch.cat([points - boxes[:, :2], boxes[:, 2:] - points], dim=-1)
    return d.clamp(min=0, max=max_distance)
