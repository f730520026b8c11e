"""NMS post-processing on hand-made cases, and COCO evaluation with pycocotools on known answers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from damo_yolo.evaluation import evaluate_coco_results
from damo_yolo.postprocess import NMS_PRE, batched_nms, postprocess


def _one_class_nms(boxes, scores, thr):
    return batched_nms(boxes, scores, np.zeros(len(scores), np.int64), thr)


def test_nms_suppresses_overlaps_above_the_threshold_only():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 5], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    # IoU(0,1) = 90/110 = 0.818 → suppressed at 0.7; IoU(0,2) = 0.5 → kept
    assert _one_class_nms(boxes, scores, 0.7).tolist() == [0, 2, 3]
    assert _one_class_nms(boxes, scores, 0.85).tolist() == [0, 1, 2, 3]


def test_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    assert batched_nms(boxes, np.array([0.9, 0.8]), np.array([0, 1]), 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, np.array([0.9, 0.8]), np.array([1, 1]), 0.5).tolist() == [0]


def test_postprocess_threshold_is_strict_and_top_k_sorted():
    scores = np.array([[0.05, 0.2], [0.5, 0.05], [0.3, 0.0]], np.float32)
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 110, 10]], np.float32)
    out_boxes, out_scores, out_classes = postprocess(scores, boxes, 0.05, 0.7, max_detections=2)
    assert out_scores.tolist() == pytest.approx([0.5, 0.3]) and out_classes.tolist() == [0, 0]
    assert out_boxes.tolist() == [[50, 50, 60, 60], [100, 0, 110, 10]]
    empty = postprocess(np.zeros((4, 3), np.float32), np.zeros((4, 4), np.float32), 0.05, 0.7)
    assert [a.shape for a in empty] == [(0, 4), (0,), (0,)]


@pytest.fixture()
def gt_file(tmp_path):
    gt = {"images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.jpg"},
                     {"id": 2, "width": 100, "height": 100, "file_name": "b.jpg"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 40], "area": 1600,
                           "iscrowd": 0},
                          {"id": 2, "image_id": 2, "category_id": 5, "bbox": [50, 20, 30, 60], "area": 1800,
                           "iscrowd": 0}],
          "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path


def test_perfect_detections_score_one(gt_file):
    results = [{"image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 40], "score": 0.9},
               {"image_id": 2, "category_id": 5, "bbox": [50, 20, 30, 60], "score": 0.8}]
    metrics = evaluate_coco_results(gt_file, results)
    assert metrics["mAP"] == pytest.approx(1.0) and metrics["mAP_50"] == pytest.approx(1.0)
    assert metrics["per_class"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0)}


def test_wrong_class_and_poor_boxes_score_less(gt_file):
    results = [{"image_id": 1, "category_id": 5, "bbox": [10, 10, 40, 40], "score": 0.9},  # wrong class
               {"image_id": 2, "category_id": 5, "bbox": [56, 26, 30, 60], "score": 0.8}]  # IoU 1296/2304
    metrics = evaluate_coco_results(gt_file, results)
    assert metrics["per_class"]["cat"] == 0.0
    # dog: the false "dog" on image 1 outranks the true one → precision 0.5 at full recall, and the true
    # one (IoU 0.5625) counts only at the thresholds 0.50 and 0.55: AP = 0.5 · 2/10 = 0.1
    assert metrics["per_class"]["dog"] == pytest.approx(0.1)
    assert metrics["mAP_50"] == pytest.approx(0.25)  # (cat 0 + dog 0.5) / 2
    assert evaluate_coco_results(gt_file, [])["mAP"] == 0.0


def _greedy_reference(boxes, scores, classes, thr):
    """The textbook greedy NMS, one box at a time, per class: what OpenCV's must reproduce."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        ok = True
        for j in keep:
            if classes[j] != classes[i]:
                continue
            w = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            h = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            inter = max(w, 0) * max(h, 0)
            if inter / (area[i] + area[j] - inter) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return np.array(keep, np.int64)


@pytest.mark.parametrize("seed", range(5))
def test_opencv_nms_equals_the_greedy_reference(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n = int(rng.integers(1, 300))
        xy = rng.uniform(0, 200, (n, 2))
        boxes = np.c_[xy, xy + rng.uniform(1, 80, (n, 2))].astype(np.float32)
        scores = rng.random(n).astype(np.float32)
        classes = rng.integers(0, 4, n)
        thr = float(rng.uniform(0.05, 0.95))
        assert np.array_equal(batched_nms(boxes, scores, classes, thr),
                              _greedy_reference(boxes.astype(np.float64), scores, classes, thr))


def test_candidates_are_capped_before_nms():
    """Score 0 on 8,400 priors x 80 classes (a poorly trained model): at most NMS_PRE candidates enter NMS, the
    highest scoring, so the cost is bounded; with the cap lifted the same top detections come back."""
    import time
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 600, (8400, 2))
    boxes = np.c_[xy, xy + rng.uniform(8, 120, (8400, 2))].astype(np.float32)
    scores = rng.uniform(0, 0.2, (8400, 80)).astype(np.float32)
    scores[:5, 3] = [0.95, 0.9, 0.85, 0.8, 0.75]  # a few confident detections
    start = time.perf_counter()
    b, s, c = postprocess(scores, boxes, 0.0, 0.65, 100)
    capped_ms = (time.perf_counter() - start) * 1e3
    assert len(s) == 100 and s[0] == np.float32(0.95) and (np.diff(s) <= 0).all()
    assert capped_ms < 2000, capped_ms  # 672,000 candidates uncapped; bounded by NMS_PRE = 1000 here
    small = scores[:200, :5]
    assert all(np.array_equal(x, y) for x, y in zip(postprocess(small, boxes[:200], 0.1, 0.65, 50),
                                                     postprocess(small, boxes[:200], 0.1, 0.65, 50, nms_pre=None)))
    assert NMS_PRE == 1000


@pytest.mark.parametrize("seed", range(3))
def test_capped_candidates_are_the_best_with_ties_in_candidate_order(seed):
    """The cap keeps the NMS_PRE best (prior, class) pairs, of equal scores the first — as a full stable sort would —
    also where many scores saturate at 1.0 (random weights), through the prior-score floor that skips the rest."""
    rng = np.random.default_rng(seed)
    n, c = 3000, 20
    xy = rng.uniform(0, 600, (n, 2))
    boxes = np.c_[xy, xy + rng.uniform(8, 120, (n, 2))].astype(np.float32)
    scores = rng.choice(np.float32([0.2, 0.5, 0.7, 1.0]), (n, c), p=[0.6, 0.3, 0.0995, 0.0005]).astype(np.float32)
    for thr in (0.0, 0.3, 0.6):
        prior, cls = np.nonzero(scores > thr)
        cand = scores[prior, cls]
        top = np.sort(np.argsort(-cand, kind="stable")[:NMS_PRE])
        keep = batched_nms(boxes[prior[top]], cand[top], cls[top], 0.6)[:100]
        got = postprocess(scores, boxes, thr, 0.6, 100)
        assert np.array_equal(got[0], boxes[prior[top]][keep]) and np.array_equal(got[2], cls[top][keep])


def test_the_cap_keeps_the_threshold_and_the_count_at_its_edges():
    """Scores equal to a threshold that float32 cannot hold (0.1) stay out, as without the cap; a NaN score does
    not push a candidate out of the cap; a floor equal to the threshold changes nothing; nms_pre must be >= 1."""
    rng = np.random.default_rng(3)
    n = NMS_PRE + 200
    xy = rng.uniform(0, 600, (n, 2))
    boxes = np.c_[xy, xy + rng.uniform(8, 120, (n, 2))].astype(np.float32)
    scores = np.full((n, 2), np.float32(0.1))
    scores[:150, 0] = 0.5
    capped, uncapped = postprocess(scores, boxes, 0.1, 0.6, 300), postprocess(scores, boxes, 0.1, 0.6, 300, None)
    assert all(np.array_equal(a, b) for a, b in zip(capped, uncapped)) and len(capped[1]) > 0
    scores = rng.uniform(0.2, 0.9, (n, 1)).astype(np.float32)
    scores[7, 0] = np.nan
    far = np.c_[np.arange(n) * 200.0, np.zeros(n), np.arange(n) * 200.0 + 10, np.full(n, 10.0)].astype(np.float32)
    assert len(postprocess(scores, far, 0.0, 0.5, 2000)[1]) == NMS_PRE  # disjoint boxes: every candidate kept
    with pytest.raises(ValueError, match="nms_pre must be at least 1"):
        postprocess(scores, far, 0.0, 0.5, 100, nms_pre=0)
