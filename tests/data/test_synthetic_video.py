"""The synthetic tracking clips: an H.264 video PyAV reads back frame for frame at the clip's rate, ground truth in
MOTChallenge's layout whose tracks move, cross, hide one another, enter and leave — and py-motmetrics, scoring
that ground truth against itself and against a tracker that swaps two identities, gives the figures it should
(the harness the tracking gate will use)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mot import mot_scores

FRAMES, SIZE, FPS = 90, (192, 256), 25


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from damo_yolo.data.synthetic_video import generate_clip
    out = tmp_path_factory.mktemp("clips")
    return generate_clip(out, "clip00", FRAMES, SIZE, FPS, seed=3, photos=[], objects=8)


def _ground_truth(clip: Path) -> np.ndarray:
    return np.loadtxt(clip.parent / clip.stem / "gt" / "gt.txt", delimiter=",", ndmin=2)


def _iou(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w, h = min(ax2, bx2) - max(a[0], b[0]), min(ay2, by2) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_the_video_reads_back_frame_for_frame(clip):
    import av
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        assert stream.codec_context.name == "h264" and float(stream.average_rate) == FPS
    assert len(frames) == FRAMES and frames[0].shape == (*SIZE, 3)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1  # things moved


def test_the_ground_truth_moves_crosses_hides_enters_and_leaves(clip):
    gt = _ground_truth(clip)
    info = (clip.parent / clip.stem / "seqinfo.ini").read_text()
    assert f"seqLength={FRAMES}" in info and f"frameRate={FPS}" in info
    frame, track, x, y, w, h, considered, label, visibility = gt.T
    assert frame.min() == 1 and frame.max() <= FRAMES and (considered == 1).all()
    assert ((label >= 1) & (label <= 8)).all() and ((visibility > 0) & (visibility <= 1)).all()
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= SIZE[1]).all() and (y + h <= SIZE[0]).all()
    first = {t: frame[track == t].min() for t in np.unique(track)}
    last = {t: frame[track == t].max() for t in np.unique(track)}
    assert len(first) >= 6
    assert any(f > 1 for f in first.values()), "no object enters"
    assert any(f < FRAMES for f in last.values()), "no object leaves"
    assert (visibility < 0.9).any(), "no object is partly hidden"
    crossing = False
    for f in np.unique(frame):
        rows = gt[frame == f]
        crossing |= any(_iou(a[2:6], b[2:6]) > 0.1 for i, a in enumerate(rows) for b in rows[i + 1:])
    assert crossing, "no two objects overlap"
    for t in np.unique(track):  # each track moves, and one object per track per frame
        rows = gt[track == t]
        assert len(np.unique(rows[:, 0])) == len(rows)
        assert len(rows) < 3 or np.ptp(rows[:, 2] + rows[:, 4] / 2) + np.ptp(rows[:, 3] + rows[:, 5] / 2) > 5


def test_motmetrics_scores_the_truth_perfect_and_a_swap_lower(clip):
    gt = _ground_truth(clip)
    assert mot_scores(gt, gt) == {"mota": 1.0, "idf1": 1.0, "num_switches": 0.0}
    swapped = gt.copy()
    a, b = np.unique(gt[:, 1])[:2]
    later = swapped[:, 0] > np.median(gt[:, 0])
    swapped[later & (gt[:, 1] == a), 1], swapped[later & (gt[:, 1] == b), 1] = b, a
    scored = mot_scores(gt, swapped)
    assert scored["num_switches"] >= 1 and scored["idf1"] < 1.0 and scored["mota"] < 1.0, scored


def test_the_cli_writes_clips_and_refuses_odd_sizes(tmp_path):
    from damo_yolo.data.synthetic_video import main
    assert main(["--out", str(tmp_path), "--clips", "1", "--frames", "3", "--size", "64", "96",
                 "--backgrounds", str(tmp_path / "none")]) == 0
    assert (tmp_path / "clip00.mp4").is_file() and (tmp_path / "clip00" / "gt" / "gt.txt").is_file()
    assert main(["--out", str(tmp_path), "--size", "65", "96"]) == 2
