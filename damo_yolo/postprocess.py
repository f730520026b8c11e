"""Detection post-processing of the reference (damo/utils/boxes.py ``postprocess``), in numpy.

Candidates are every (prior, class) pair scoring strictly above the threshold; class-aware NMS (a box
suppresses a same-class box whose IoU with it exceeds the threshold); the best ``max_detections`` are
kept, highest score first. Shared by evaluation and the serving backend, so both give the same boxes.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .contract import MAX_DETECTIONS


def box_iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


_MATRIX_LIMIT = 8192  # boxes per class for which the suppression matrix (n² booleans, ≤ 64 MB) is used


def _greedy_nms(boxes: np.ndarray, order: np.ndarray, iou_threshold: float) -> np.ndarray:
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou_one_to_many(boxes[i], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS (exactly): returns kept indices, highest score first.

    With the boxes sorted by score, box j survives iff no surviving earlier box overlaps it above the
    threshold. That rule is iterated on a precomputed "i suppresses j" matrix from "all survive" until
    nothing changes (Cluster-NMS, Zheng et al. 2020): after t rounds the first t boxes are settled, and in
    practice a few rounds settle all, each one vectorised — instead of one Python step per kept box.
    """
    order = np.argsort(-scores, kind="stable")
    n = order.size
    if n > _MATRIX_LIMIT:
        return _greedy_nms(boxes, order, iou_threshold)
    sorted_boxes = boxes[order]
    suppresses = np.triu(_suppression_matrix(sorted_boxes, iou_threshold), k=1)
    keep = np.ones(n, dtype=bool)
    for _ in range(n):
        new_keep = ~suppresses[keep].any(axis=0)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def _suppression_matrix(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """[n, n] booleans: IoU(i, j) > threshold (float32, no [n, n, 2] temporaries)."""
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, i], dtype=np.float32) for i in range(4))
    w = np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :])
    h = np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :])
    np.clip(w, 0, None, out=w)
    np.clip(h, 0, None, out=h)
    inter = w * h
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = area[:, None] + area[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou > iou_threshold


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware NMS (boxes of different classes never suppress each other), highest score first."""
    if boxes.size == 0:
        return np.zeros(0, np.int64)
    kept = []
    for cls in np.unique(classes):
        members = np.nonzero(classes == cls)[0]
        kept.append(members[nms(boxes[members], scores[members], iou_threshold)])
    keep = np.concatenate(kept)
    return keep[np.argsort(-scores[keep], kind="stable")]


def postprocess(scores: np.ndarray, boxes: np.ndarray, score_threshold: float, iou_threshold: float,
                max_detections: int = MAX_DETECTIONS, pre_nms_topk: Optional[int] = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: ``scores`` [N, C] probabilities, ``boxes`` [N, 4] xyxy → (boxes [K, 4], scores [K],
    classes [K]) with K ≤ max_detections, sorted by score. ``pre_nms_topk`` optionally caps the candidates
    entering NMS (the reference has no cap; None keeps it so)."""
    scores = np.asarray(scores, np.float32)
    boxes = np.asarray(boxes, np.float32)
    prior_idx, classes = np.nonzero(scores > score_threshold)
    cand_scores = scores[prior_idx, classes]
    if pre_nms_topk is not None and cand_scores.size > pre_nms_topk:
        top = np.argpartition(-cand_scores, pre_nms_topk - 1)[:pre_nms_topk]
        prior_idx, classes, cand_scores = prior_idx[top], classes[top], cand_scores[top]
    cand_boxes = boxes[prior_idx]
    keep = batched_nms(cand_boxes, cand_scores, classes, iou_threshold)[:max_detections]
    return cand_boxes[keep], cand_scores[keep], classes[keep].astype(np.int64)
