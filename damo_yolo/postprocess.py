"""Detection post-processing (the reference's damo/utils/boxes.py ``postprocess``), on OpenCV's NMS.

Candidates are the (prior, class) pairs scoring strictly above the threshold; at most ``NMS_PRE`` of them, the
highest scoring, enter class-aware NMS (a box suppresses a same-class box whose IoU with it exceeds the
threshold: ``cv2.dnn.NMSBoxes`` class by class); the best ``max_detections`` are kept, highest score first. The cap
is the serving backend's: it bounds the work any request can cause (mmdet/mmyolo's ``nms_pre``), since a
poorly trained 80-class model at 640 with threshold 0 sends 670,000 candidates into an O(n²) NMS.
Evaluation passes ``nms_pre=None``, the reference's protocol (on the CI gate's model the cap changes no
mAP figure).

Served, this runs on every image, so it is kept cheap: the ``NMS_PRE``-th best prior's score is a floor under the
``NMS_PRE`` best candidates, so only the scores above it are gathered and ranked; NMS runs class by class, where
greedy suppression compares a box with the kept boxes of its own class only (13 → 4 ms on T's 320,000
candidates of random weights).
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from .contract import MAX_DETECTIONS

NMS_PRE = 1000  # candidates entering NMS per image, highest scores first


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x1, y1, x2, y2) box with each of ``boxes`` [N, 4]."""
    box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware greedy NMS (boxes of different classes never suppress each other): kept indices, highest
    score first."""
    if boxes.size == 0:
        return np.zeros(0, np.int64)
    boxes = np.asarray(boxes, np.float64)
    scores = np.asarray(scores, np.float32)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    by_class = np.argsort(classes, kind="stable")
    starts = np.flatnonzero(np.diff(classes[by_class])) + 1
    keep = []
    for members in np.split(by_class, starts):
        if len(members) == 1:  # as NMSBoxes would: kept unless its score is not above 0
            keep.append(members[scores[members] > 0])
            continue
        # postprocess's candidates score above a threshold ≥ 0, so NMSBoxes's floor of 0 drops none
        kept = cv2.dnn.NMSBoxes(xywh[members], scores[members], 0.0, float(iou_threshold))
        keep.append(members[np.asarray(kept, np.int64).reshape(-1)])
    kept_all = np.sort(np.concatenate(keep))  # equal scores: the earlier candidate first, as OpenCV orders them
    return kept_all[np.argsort(-scores[kept_all], kind="stable")]


def _candidates(scores: np.ndarray, score_threshold: float, nms_pre: Optional[int]):
    """(prior indices, classes, scores) of the pairs above ``score_threshold``, in (prior, class) order; at most
    ``nms_pre`` of them, the best (of equal scores at the cut, the first)."""
    threshold = np.float32(max(score_threshold, 0.0))  # compared as the float32 scores are; a 0 score is no box
    above = None
    if nms_pre is not None and len(scores) > nms_pre:
        best_per_prior = scores.max(axis=1)  # the nms_pre-th best of these: nms_pre pairs score at least this much
        floor = np.partition(best_per_prior, len(scores) - nms_pre)[-nms_pre]
        if floor > threshold and not np.isnan(best_per_prior).any():  # NaN would sort above every score
            above = scores >= floor
    prior_idx, classes = np.nonzero(scores > threshold if above is None else above)
    cand_scores = scores[prior_idx, classes]
    if nms_pre is not None and cand_scores.size > nms_pre:  # the best, equal scores in candidate order
        kth = np.partition(cand_scores, cand_scores.size - nms_pre)[-nms_pre]
        above_kth = cand_scores > kth
        at_kth = np.flatnonzero(cand_scores == kth)[:nms_pre - int(above_kth.sum())]
        top = np.sort(np.concatenate([np.flatnonzero(above_kth), at_kth]))
        prior_idx, classes, cand_scores = prior_idx[top], classes[top], cand_scores[top]
    return prior_idx, classes, cand_scores


def postprocess(scores: np.ndarray, boxes: np.ndarray, score_threshold: float, iou_threshold: float,
                max_detections: int = MAX_DETECTIONS, nms_pre: Optional[int] = NMS_PRE
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: ``scores`` [N, C] probabilities, ``boxes`` [N, 4] xyxy → (boxes [K, 4], scores [K],
    classes [K]) with K ≤ max_detections, sorted by score. ``nms_pre=None`` lifts the cap on the candidates
    entering NMS (the reference's behaviour; unbounded cost). A threshold below 0 acts as 0."""
    if nms_pre is not None and nms_pre < 1:
        raise ValueError(f"nms_pre must be at least 1 (or None: no cap), got {nms_pre}")
    scores = np.asarray(scores, np.float32)
    boxes = np.asarray(boxes, np.float32)
    prior_idx, classes, cand_scores = _candidates(scores, score_threshold, nms_pre)
    cand_boxes = boxes[prior_idx]
    keep = batched_nms(cand_boxes, cand_scores, classes, iou_threshold)[:max_detections]
    return cand_boxes[keep], cand_scores[keep], classes[keep].astype(np.int64)
