"""Track IDs for a stream's detections, frame by frame, in the SDK.

Tracking runs beside the client, not in the server: the served model stays stateless, so any replica answers any
frame, the autoscaler and rollouts move no state, and a stream never depends on reaching the same pod (Triton's
sequence batcher would need that affinity, which the headless Service's client-side balancing does not give). It
costs well under a millisecond a frame beside the detection.

The association is Tryolabs' norfair (a maintained tracker library): a constant-velocity Kalman filter per object,
the frame's detections matched to the objects' predicted boxes by IoU, class by class; an object missed by the
detector keeps its ID through as many missed frames as it has been detected in, up to ``max_missed``, predicted
where it moves, and takes the next detection that overlaps it. A box of no area (clipped to the image's edge)
cannot be matched by IoU: it gets the ID ``UNTRACKED``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from damo_client.results import Detection

MAX_MISSED = 15  # most frames an object keeps its ID without a detection (0.6 s at 25 fps)
MIN_IOU = 0.3  # a detection continues an object when its box overlaps the object's predicted box this much
UNTRACKED = -1  # the ID of a detection the tracker cannot take (a box of no area)


@dataclass(frozen=True)
class TrackedDetection(Detection):
    """A detection with the ID of the object it continues: the same ID from frame to frame."""

    track_id: int


class Tracker:
    """One stream's tracker: ``update`` with each frame's detections, in frame order, gives them their IDs."""

    def __init__(self, max_missed: int = MAX_MISSED, min_iou: float = MIN_IOU):
        from norfair import Tracker as Norfair
        if max_missed < 1 or not 0 < min_iou < 1:
            raise ValueError(f"max_missed must be >= 1 and min_iou in (0, 1), got {max_missed} and {min_iou}")
        # hit_counter_max: frames an object outlives its last detection; no initialization delay: an ID from the
        # first detection (the server's score threshold already keeps out the doubtful ones)
        self._norfair = Norfair(distance_function="iou", distance_threshold=1 - min_iou, hit_counter_max=max_missed,
                                initialization_delay=0)

    def update(self, detections: Sequence[Detection]) -> list[TrackedDetection]:
        """This frame's detections with their track IDs (order kept). Each detection continues an object or
        starts a new one; a box of no area gets ``UNTRACKED``."""
        from norfair import Detection as Point

        boxes = [np.asarray(d.box, np.float64) for d in detections]
        usable = [i for i, box in enumerate(boxes) if box[2] > box[0] and box[3] > box[1]]
        points = [Point(np.array([boxes[i][:2], boxes[i][2:]]), np.full(2, detections[i].score),
                        label=detections[i].class_id) for i in usable]
        ids: dict[int, int] = {}
        by_identity = {id(p): i for p, i in zip(points, usable)}
        for tracked in self._norfair.update(points):
            index = by_identity.get(id(tracked.last_detection))
            if index is not None and tracked.id is not None:  # matched in this frame
                ids[index] = int(tracked.id)
        missing = [i for i in usable if i not in ids]
        if missing:  # not expected with no initialization delay; reported rather than given a made-up ID
            raise RuntimeError(f"norfair left {len(missing)} detection(s) of the frame without a track")
        return [TrackedDetection(d.box, d.score, d.class_id, d.class_name, ids.get(i, UNTRACKED))
                for i, d in enumerate(detections)]
