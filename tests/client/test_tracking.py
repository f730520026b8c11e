"""Track IDs in the SDK (damo_client.tracking, on norfair), judged by py-motmetrics against the synthetic clips'
ground truth: the truth's boxes, jittered by a pixel and with detections dropped as a detector misses them, come
back as tracks that keep their IDs — through crossings, occlusions and misses."""
from __future__ import annotations

import numpy as np
import pytest
from mot import mot_scores

from damo_client.results import Detection


@pytest.fixture(scope="module")
def truth(tmp_path_factory) -> np.ndarray:
    from damo_yolo.data.synthetic_video import generate_clip
    clip = generate_clip(tmp_path_factory.mktemp("clip"), "clip", 150, (240, 320), 25, seed=5, photos=[], objects=8)
    return np.loadtxt(clip.parent / "clip" / "gt" / "gt.txt", delimiter=",", ndmin=2)


def _tracked(truth: np.ndarray, missed: float, seed: int = 0) -> np.ndarray:
    """MOT rows of the tracks the SDK's tracker makes of the truth's boxes, jittered by 1 px (s.d.), each
    dropped with probability ``missed``."""
    from damo_client.tracking import Tracker
    rng, tracker, rows = np.random.default_rng(seed), Tracker(), []
    for f in range(1, int(truth[:, 0].max()) + 1):
        here = truth[truth[:, 0] == f]
        here = here[rng.random(len(here)) >= missed]
        detections = [Detection(tuple(float(v) for v in np.r_[r[2:4], r[2:4] + r[4:6]] + rng.normal(0, 1, 4)), 0.9,
                                int(r[7]) - 1, "shape") for r in here]
        for d in tracker.update(detections):
            x1, y1, x2, y2 = d.box
            rows.append([f, d.track_id, x1, y1, x2 - x1, y2 - y1])
    return np.array(rows).reshape(-1, 6)


def test_tracks_of_every_detection_keep_their_ids(truth):
    scores = mot_scores(truth, _tracked(truth, missed=0.0))
    print(f"\n[tracking] every box detected: {scores}")
    assert scores["mota"] >= 0.95 and scores["idf1"] >= 0.9 and scores["num_switches"] <= 2, scores


def test_tracks_survive_missed_detections(truth):
    scores = mot_scores(truth, _tracked(truth, missed=0.1))
    print(f"\n[tracking] 10 % of the boxes missed: {scores}")
    assert scores["mota"] >= 0.8 and scores["idf1"] >= 0.8 and scores["num_switches"] <= 3, scores


def test_an_object_missed_for_frames_comes_back_with_its_id():
    """A disc moving right 3 px a frame, undetected for 8 frames after 15 detections, and another disc crossing its
    path upwards: each keeps its own ID through the miss and the crossing."""
    from damo_client.tracking import Tracker
    tracker, ids = Tracker(max_missed=10), {"right": [], "up": []}
    for f in range(40):
        detections = [] if 15 <= f < 23 else [Detection((10.0 + 3 * f, 50.0, 40.0 + 3 * f, 80.0), 0.9, 0, "right")]
        detections.append(Detection((90.0, 130.0 - 3 * f, 120.0, 160.0 - 3 * f), 0.8, 0, "up"))
        for d in tracker.update(detections):
            ids[d.class_name].append(d.track_id)
    assert len(set(ids["right"])) == 1 and len(set(ids["up"])) == 1 and set(ids["right"]) != set(ids["up"]), ids


def test_a_box_of_no_area_is_left_untracked():
    """A box clipped to the image's edge to no width cannot be matched by IoU: UNTRACKED, the others tracked."""
    from damo_client.tracking import UNTRACKED, Tracker
    tracker = Tracker()
    for _ in range(3):
        flat, box = Detection((0.0, 10.0, 0.0, 40.0), 0.7, 2, "edge"), Detection((50.0, 50.0, 80.0, 80.0), 0.9, 2, "a")
        out = tracker.update([flat, flat, box])
    assert [d.track_id for d in out[:2]] == [UNTRACKED, UNTRACKED] and out[2].track_id >= 0, out


def test_the_tracker_refuses_settings_that_cannot_work():
    from damo_client.tracking import Tracker
    for bad in ({"max_missed": 0}, {"min_iou": 0.0}, {"min_iou": 1.0}):
        with pytest.raises(ValueError, match="max_missed must be >= 1 and min_iou in"):
            Tracker(**bad)
