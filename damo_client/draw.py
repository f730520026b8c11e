"""Labelled boxes drawn on a copy of an image (the client decodes only to draw, never to send)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from damo_client.results import Detection


def _colour(class_id: int) -> tuple[int, int, int]:
    hue = (class_id * 47) % 180  # well-spread hues, the same colour for a class in every image
    import cv2
    bgr = cv2.cvtColor(np.array([[[hue, 200, 230]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    blue, green, red = (int(v) for v in bgr)
    return blue, green, red


def annotate(image: np.ndarray, detections: list[Detection], scores: bool = True) -> np.ndarray:
    """A copy of a BGR image with each detection's box and 'name score' label ('name' alone without
    ``scores``: ground-truth boxes)."""
    import cv2
    out = image.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    scale = max(0.4, max(out.shape[:2]) / 1400)
    height, width = out.shape[:2]
    pad = 2  # label background around the text (anti-aliased glyphs reach a pixel beyond getTextSize's width)
    for det in sorted(detections, key=lambda d: d.score):
        x1, y1, x2, y2 = (int(round(v)) for v in det.box)
        colour = _colour(det.class_id)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        label = f"{det.class_name} {det.score:.2f}" if scores else det.class_name
        size = scale
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, size, 1)
        if tw + 2 * pad > width:  # narrower than the label: a smaller font
            size *= (width - 2 * pad) / (tw + 2 * pad)
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, size, 1)
        box_w, box_h = tw + 2 * pad, th + base + 2 * pad
        left = max(0, min(x1, width - box_w))  # the whole label inside the image
        top = max(0, min(y1 - box_h, height - box_h))
        cv2.rectangle(out, (left, top), (left + box_w - 1, top + box_h - 1), colour, -1)
        cv2.putText(out, label, (left + pad, top + pad + th), cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def save_annotated(data: bytes, detections: list[Detection], path: Path) -> Path:
    import cv2
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode the image to annotate {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), annotate(image, detections))
    return path
