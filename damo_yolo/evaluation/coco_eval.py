"""COCO box evaluation with pycocotools, shared by training, the standalone test and the served-model gate.

Results are COCO results dicts: ``image_id``, ``category_id`` (the data set's own ids), ``bbox`` as
x, y, w, h in original image pixels (w = x2 − x1, no +1), ``score``.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np

if TYPE_CHECKING:
    from pycocotools.coco import COCO

COCO_METRIC_NAMES = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")


def _load_gt(gt):
    from pycocotools.coco import COCO
    if isinstance(gt, COCO):
        return gt
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(gt))


def evaluate_coco_results(gt: Union[str, Path, "COCO"], results: Sequence[dict],
                          image_ids: Sequence[int] | None = None, verbose: bool = False) -> dict:
    """COCO mAP figures of ``results`` against the ground truth json (or a loaded COCO object).

    Returns ``{"mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l"}`` (0–1; the sizes None where pycocotools
    says -1: the set has no object of that size) plus ``per_class`` (name → AP) and ``summary`` (pycocotools' printed
    table). The scoring is damo_client's (``damo-client evaluate`` scores served answers with it).
    """
    from damo_client.evaluation import COCO_STATS, score
    stats, per_class, summary = score(_load_gt(gt), list(results), None if image_ids is None else list(image_ids))
    if verbose:
        print(summary)
    figures = {name: stats[key] for name, key in zip(COCO_METRIC_NAMES, COCO_STATS)}
    for name in COCO_METRIC_NAMES[:3]:  # a set without any object: nothing found, 0 (best-checkpoint tracking and
        figures[name] = figures[name] or 0.0  # the INT8 budget compare numbers); by size, None means n/a
    return {**figures, "per_class": per_class, "summary": summary}


def precision_recall(gt: Union[str, Path, "COCO"], results: Sequence[dict], score_thresholds: Sequence[float],
                     iou: float = 0.5, max_detections: int = 100) -> list[dict]:
    """Precision, recall and F1 at IoU ``iou`` of the detections scoring above each threshold (at most
    ``max_detections`` per image, highest first), from pycocotools' own matching (crowd and ignored boxes
    handled as COCO does). One dict per threshold: threshold, precision, recall, f1, detections per image."""
    from pycocotools.cocoeval import COCOeval
    coco_gt = _load_gt(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco_gt, coco_gt.loadRes([dict(r) for r in results]), "bbox")
        evaluator.params.iouThrs = np.array([iou])
        evaluator.params.maxDets = [max_detections]
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluator.evaluate()
    scores, matched, ignored, positives = [], [], [], 0
    for e in evaluator.evalImgs:
        if e is None:
            continue
        positives += int(np.count_nonzero(~np.asarray(e["gtIgnore"], bool)))
        scores.extend(e["dtScores"])
        matched.extend(np.asarray(e["dtMatches"])[0] > 0)
        ignored.extend(np.asarray(e["dtIgnore"])[0].astype(bool))
    scores, matched, ignored = np.asarray(scores), np.asarray(matched, bool), np.asarray(ignored, bool)
    images = len(evaluator.params.imgIds)
    rows = []
    for thr in score_thresholds:
        kept = (scores > thr) & ~ignored
        tp = int(np.count_nonzero(kept & matched))
        n = int(np.count_nonzero(kept))
        p = tp / n if n else 1.0
        r = tp / positives if positives else 0.0
        rows.append({"threshold": float(thr), "precision": p, "recall": r,
                     "f1": 2 * p * r / (p + r) if p + r else 0.0, "per_image": n / max(images, 1)})
    return rows
