"""What the CPU pipeline and the GPU map-back step share (numpy only, no Triton): per-request thresholds
and the padded ensemble outputs in original pixels."""
from __future__ import annotations

import numpy as np

from damo_yolo.contract import ServingConfig
from damo_yolo.data.preprocess import ResizeInfo


def pack(per_image: list, scales: np.ndarray, sizes: np.ndarray, k: int) -> tuple:
    """[(boxes in input pixels, scores, classes)] → num_detections [B, 1], boxes [B, K, 4] in original pixels
    (clipped), scores [B, K], classes [B, K]; rows after num_detections are zero."""
    count = len(per_image)
    num = np.zeros((count, 1), np.int32)
    out_boxes = np.zeros((count, k, 4), np.float32)
    out_scores = np.zeros((count, k), np.float32)
    out_classes = np.zeros((count, k), np.int32)
    for i, (boxes, scores, classes) in enumerate(per_image):
        n = min(len(scores), k)
        info = ResizeInfo(int(sizes[i][0]), int(sizes[i][1]), float(scales[i][0]), float(scales[i][1]))
        num[i, 0] = n
        out_boxes[i, :n] = info.to_original(boxes[:n])
        out_scores[i, :n] = scores[:n]
        out_classes[i, :n] = classes[:n]
    return num, out_boxes, out_scores, out_classes


def map_back(num_dets, det_boxes, det_scores, det_classes, scales, sizes, score_thr, iou_thr,
             serving: ServingConfig) -> tuple:
    """The GPU map-back step: the plan's detections (already NMS'd, top-K, input pixels) → the ensemble's
    outputs. A per-request score threshold at or above the plan's filters further (strictly greater, as the
    CPU postprocess); one below it, or another IoU threshold, cannot be honoured and is refused
    (``ServingConfig.check_thresholds``)."""
    serving.check_thresholds(score_thr, iou_thr)
    per_image = []
    for i in range(len(num_dets)):
        n = int(num_dets[i].reshape(-1)[0])
        keep = det_scores[i, :n] > score_thr[i]
        per_image.append((det_boxes[i, :n][keep], det_scores[i, :n][keep], det_classes[i, :n][keep]))
    return pack(per_image, scales, sizes, serving.max_detections)
