"""Labelled boxes drawn on a copy of an image (the client decodes only to draw, never to send)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from damo_client.results import Detection

FONT_SCALE_PER_PIXEL = 1 / 1400  # label size follows the image's longer side, never below MIN_FONT_SCALE
MIN_FONT_SCALE = 0.4
PAD = 2  # label background around the text's ink


def _colour(class_id: int) -> tuple[int, int, int]:
    hue = (class_id * 47) % 180  # well-spread hues, the same colour for a class in every image
    import cv2
    bgr = cv2.cvtColor(np.array([[[hue, 200, 230]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    blue, green, red = (int(v) for v in bgr)
    return blue, green, red


def label_patch(text: str, colour: tuple[int, int, int], scale: float) -> np.ndarray:
    """The label as it is drawn: black anti-aliased text on ``colour``, PAD pixels around the ink. Measured on
    the rendered glyphs, since they reach beyond cv2.getTextSize's box (ascenders above it at larger scales)."""
    import cv2
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    margin = height + 4
    ink = np.zeros((height + baseline + 2 * margin, width + 2 * margin), np.uint8)
    cv2.putText(ink, text, (margin, margin + height), cv2.FONT_HERSHEY_SIMPLEX, scale, (255,), 1, cv2.LINE_AA)
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:  # nothing to write (an empty name)
        return np.empty((0, 0, 3), np.uint8)
    ink = np.pad(ink[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1], PAD)
    alpha = ink[..., None].astype(np.float32) / 255
    return np.round(np.array(colour, np.float32) * (1 - alpha)).astype(np.uint8)


@dataclass(frozen=True)
class Label:
    """A label's patch and where its top-left corner goes."""

    left: int
    top: int
    patch: np.ndarray

    @property
    def rect(self) -> tuple[int, int, int, int]:
        """(x1, y1, x2, y2), exclusive ends."""
        return self.left, self.top, self.left + self.patch.shape[1], self.top + self.patch.shape[0]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def place_labels(detections: list[Detection], height: int, width: int,
                 scores: bool = True) -> list[Optional[Label]]:
    """Each detection's 'name score' label and its place (None: the image is too small for any label). A label
    lies whole inside the image and, best detection first, clear of the labels already placed: above its box,
    else below it, else inside its top or bottom edge, else where it covers the least. So a label pushed in
    from the image's edge does not hide a neighbour's (as 'square 0.67' once hid 'trian' of 'triangle 0.63')."""
    base_scale = max(MIN_FONT_SCALE, max(height, width) * FONT_SCALE_PER_PIXEL)
    labels: list[Optional[Label]] = [None] * len(detections)
    for i in sorted(range(len(detections)), key=lambda i: -detections[i].score):
        det = detections[i]
        track = f" #{det.track_id}" if hasattr(det, "track_id") else ""  # a TrackedDetection's ID
        text = f"{det.class_name}{track} {det.score:.2f}" if scores else f"{det.class_name}{track}"
        colour, scale = _colour(det.class_id), base_scale
        patch = label_patch(text, colour, scale)
        while patch.size and (patch.shape[1] > width or patch.shape[0] > height) and scale > 0.05:
            scale *= 0.95 * min(width / patch.shape[1], height / patch.shape[0])  # a smaller font that fits
            patch = label_patch(text, colour, scale)
        h, w = patch.shape[:2]
        if not patch.size or w > width or h > height:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in det.box)
        left = min(max(x1, 0), width - w)
        candidates = [Label(left, min(max(top, 0), height - h), patch) for top in (y1 - h, y2, y1, y2 - h)]
        covered = [sum(_overlap(c.rect, other.rect) for other in labels if other is not None) for c in candidates]
        labels[i] = candidates[covered.index(min(covered))]
    return labels


def annotate(image: np.ndarray, detections: list[Detection], scores: bool = True) -> np.ndarray:
    """A copy of a BGR image with each detection's box and 'name score' label ('name' alone without
    ``scores``: ground-truth boxes): the boxes first, then the labels over them (see place_labels)."""
    import cv2
    out = image.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    order = sorted(range(len(detections)), key=lambda i: detections[i].score)  # the best drawn last, on top
    for i in order:
        x1, y1, x2, y2 = (int(round(v)) for v in detections[i].box)
        cv2.rectangle(out, (x1, y1), (x2, y2), _colour(detections[i].class_id), thickness)
    labels = place_labels(detections, out.shape[0], out.shape[1], scores)
    for i in order:
        label = labels[i]
        if label is not None:
            x1, y1, x2, y2 = label.rect
            out[y1:y2, x1:x2] = label.patch if out.ndim == 3 else label.patch[..., 1]
    return out


def save_annotated(data: bytes, detections: list[Detection], path: Path) -> Path:
    import cv2
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode the image to annotate {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), annotate(image, detections))
    return path
