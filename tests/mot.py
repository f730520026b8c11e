"""py-motmetrics on MOTChallenge rows (frame, id, x, y, w, h, ...): MOTA, IDF1 and identity switches of tracks
against the synthetic clips' ground truth, matched at IoU 0.5 as MOTChallenge does."""
from __future__ import annotations

import numpy as np


def mot_scores(truth: np.ndarray, tracks: np.ndarray) -> dict:
    import motmetrics as mm
    accumulator = mm.MOTAccumulator(auto_id=False)
    for f in np.unique(truth[:, 0]):
        t, h = truth[truth[:, 0] == f], tracks[tracks[:, 0] == f] if len(tracks) else np.zeros((0, 6))
        distances = mm.distances.iou_matrix(t[:, 2:6], h[:, 2:6], max_iou=0.5)
        accumulator.update(t[:, 1].astype(int), h[:, 1].astype(int), distances, frameid=int(f))
    summary = mm.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches"], name="clip")
    return {k: float(summary[k].iloc[0]) for k in ("mota", "idf1", "num_switches")}
