"""Detection post-processing (the reference's damo/utils/boxes.py ``postprocess``), on OpenCV's NMS.

Candidates are the (prior, class) pairs scoring strictly above the threshold; at most ``NMS_PRE`` of them, the
highest scoring, enter class-aware NMS (a box suppresses a same-class box whose IoU with it exceeds the
threshold: ``cv2.dnn.NMSBoxesBatched``); the best ``max_detections`` are kept, highest score first. The cap
is the serving backend's: it bounds the work any request can cause (mmdet/mmyolo's ``nms_pre``), since a
poorly trained 80-class model at 640 with threshold 0 sends 670,000 candidates into an O(n²) NMS.
Evaluation passes ``nms_pre=None``, the reference's protocol (on the CI gate's model the cap changes no
mAP figure).
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
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    keep = cv2.dnn.NMSBoxesBatched(xywh, np.asarray(scores, np.float32), np.asarray(classes, np.int32), -1.0,
                                   float(iou_threshold))
    keep = np.asarray(keep, np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


def postprocess(scores: np.ndarray, boxes: np.ndarray, score_threshold: float, iou_threshold: float,
                max_detections: int = MAX_DETECTIONS, nms_pre: Optional[int] = NMS_PRE
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: ``scores`` [N, C] probabilities, ``boxes`` [N, 4] xyxy → (boxes [K, 4], scores [K],
    classes [K]) with K ≤ max_detections, sorted by score. ``nms_pre=None`` lifts the cap on the candidates
    entering NMS (the reference's behaviour; unbounded cost)."""
    scores = np.asarray(scores, np.float32)
    boxes = np.asarray(boxes, np.float32)
    prior_idx, classes = np.nonzero(scores > score_threshold)
    cand_scores = scores[prior_idx, classes]
    if nms_pre is not None and cand_scores.size > nms_pre:
        top = np.argpartition(-cand_scores, nms_pre - 1)[:nms_pre]
        prior_idx, classes, cand_scores = prior_idx[top], classes[top], cand_scores[top]
    cand_boxes = boxes[prior_idx]
    keep = batched_nms(cand_boxes, cand_scores, classes, iou_threshold)[:max_detections]
    return cand_boxes[keep], cand_scores[keep], classes[keep].astype(np.int64)
