"""Inference preprocessing shared by evaluation, export parity checks and the CPU serving backend.

The reference test transform: decode to RGB, stretch to the model input (cv2 INTER_LINEAR, separate x/y
scales), float32 in 0–255, no mean/std. ``letterbox`` keeps the aspect ratio instead: the resized image sits
at the top-left, padded bottom/right with ``pad_value`` (the reference's keep_ratio=True inference mode).
Only numpy and OpenCV are needed here.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

RESIZE_MODES = ("stretch", "letterbox")


@dataclass(frozen=True)
class ResizeInfo:
    """How an original image maps onto the network input: input = original · scale (+ no offset)."""

    orig_h: int
    orig_w: int
    scale_y: float
    scale_x: float

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes (x1, y1, x2, y2) in input pixels → original pixels, clipped to the image."""
        out = np.asarray(boxes, dtype=np.float32).copy()
        out[..., 0::2] = np.clip(out[..., 0::2] / self.scale_x, 0, self.orig_w)
        out[..., 1::2] = np.clip(out[..., 1::2] / self.scale_y, 0, self.orig_h)
        return out


def resize_image(rgb: np.ndarray, size: tuple[int, int], mode: str = "stretch",
                 pad_value: float = 0.0) -> tuple[np.ndarray, ResizeInfo]:
    """Resize an HxWx3 uint8 image to ``size`` = (H, W) as the model was trained; returns HWC uint8/float."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; known: {', '.join(RESIZE_MODES)}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    th, tw = size
    if mode == "stretch":
        out = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_LINEAR)
        return out, ResizeInfo(h, w, th / h, tw / w)
    r = min(th / h, tw / w)
    nh, nw = max(1, int(h * r)), max(1, int(w * r))
    canvas = np.full((th, tw, 3), pad_value, dtype=rgb.dtype)
    canvas[:nh, :nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, ResizeInfo(h, w, nh / h, nw / w)


def preprocess(bgr: np.ndarray, size: tuple[int, int], mode: str = "stretch",
               pad_value: float = 0.0) -> tuple[np.ndarray, ResizeInfo]:
    """An OpenCV (BGR) image → a float32 CHW RGB tensor of the model input size, and the mapping back."""
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    resized, info = resize_image(rgb, size, mode, pad_value)
    return np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32), info
