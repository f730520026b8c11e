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

    Returns ``{"mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l"}`` (0–1) plus ``per_class``
    (name → AP) and ``summary`` (pycocotools' printed table).
    """
    from pycocotools.cocoeval import COCOeval
    coco_gt = _load_gt(gt)
    ids = list(image_ids) if image_ids is not None else sorted(coco_gt.getImgIds())
    if not results:
        return {**{k: 0.0 for k in COCO_METRIC_NAMES}, "per_class": {
            c["name"]: 0.0 for c in coco_gt.cats.values()}, "summary": "no detections"}
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    if verbose:
        print(buffer.getvalue())
    stats = [max(float(s), 0.0) for s in evaluator.stats[:6]]
    return {**dict(zip(COCO_METRIC_NAMES, stats)), "per_class": per_class_ap(evaluator, coco_gt),
            "summary": buffer.getvalue()}


def per_class_ap(evaluator, coco_gt) -> dict[str, float]:
    """AP@[.5:.95] per category from an accumulated COCOeval (absent classes get 0)."""
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    out = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        out[coco_gt.cats[cat_id]["name"]] = float(np.mean(p)) if p.size else 0.0
    return out
