"""Training augmentations of the DAMO-YOLO recipe (reference: damo/dataset/datasets/mosaic_wrapper.py and
damo/dataset/transforms/): mosaic, random affine, mixup, flip, and an optional HSV jitter.

Every function takes its random generator, so a sample is a pure function of (seed, epoch, index).
Images are H×W×3 uint8 RGB; boxes are [n, 4] float32 xyxy pixels; labels [n] int64. ``polygons`` is a list
with one entry per box: the object's outline as a [k, 2] float array (all parts of a multi-part COCO
polygon in one list of points, as the reference reads them), or None where there is none (box-only or RLE
annotations). Mosaic carries the outlines; the random affine takes each box from its transformed outline,
as the reference does, and from the box corners where an object has none. The transforms after the affine
(mixup, resize, flip) are axis-aligned, so they move boxes exactly and need no outlines.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np

FILL = 114  # canvas colour of mosaic, affine borders and mixup


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)


def clip_boxes(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)


def box_areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def hflip(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = img.shape[1]
    flipped = boxes.copy()
    flipped[:, [0, 2]] = w - boxes[:, [2, 0]]
    return np.ascontiguousarray(img[:, ::-1]), flipped


def random_hsv(img: np.ndarray, rng: np.random.Generator, gains: Sequence[float] = (0.015, 0.7, 0.4)) -> np.ndarray:
    """YOLO-style colour jitter: hue, saturation and value scaled by 1 ± gain."""
    r = rng.uniform(-1, 1, 3) * np.asarray(gains) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * r[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def affine_matrix(rng: np.random.Generator, in_size: tuple[int, int], out_size: tuple[int, int], degrees: float,
                  translate: float, scale: tuple[float, float], shear: float) -> tuple[np.ndarray, float]:
    """M = T·S·R·C: centre the input, rotate + scale, shear, translate into the output. Returns (M 3×3, s)."""
    ih, iw = in_size
    oh, ow = out_size
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -iw / 2, -ih / 2
    s = rng.uniform(*scale)
    rotation = np.eye(3)
    rotation[:2] = cv2.getRotationMatrix2D((0, 0), rng.uniform(-degrees, degrees), s)
    shearing = np.eye(3)
    shearing[0, 1] = math.tan(math.radians(rng.uniform(-shear, shear)))
    shearing[1, 0] = math.tan(math.radians(rng.uniform(-shear, shear)))
    translation = np.eye(3)
    translation[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * ow
    translation[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * oh
    return translation @ shearing @ rotation @ centre, s


def resample_polygon(points: np.ndarray, n: int = 1000) -> np.ndarray:
    """``n`` points spaced evenly in vertex index along the outline from its first to its last vertex (the
    reference's ``resample_segments``: the closing edge back to the first vertex is not sampled)."""
    t = np.linspace(0, len(points) - 1, n)
    index = np.arange(len(points))
    return np.stack([np.interp(t, index, points[:, 0]), np.interp(t, index, points[:, 1])], 1)


def polygon_box(points: np.ndarray, w: int, h: int) -> np.ndarray:
    """The extent of the points inside [0, w]×[0, h] (the reference's ``segment2box``); zeros if none is."""
    x, y = points[:, 0], points[:, 1]
    inside = (x >= 0) & (y >= 0) & (x <= w) & (y <= h)
    if not inside.any():
        return np.zeros(4)
    x, y = x[inside], y[inside]
    return np.array([x.min(), y.min(), x.max(), y.max()])


def warp_boxes(boxes: np.ndarray, polygons: Optional[Sequence[Optional[np.ndarray]]], matrix: np.ndarray,
               out_size: tuple[int, int], samples: int = 1000) -> np.ndarray:
    """Boxes after the affine ``matrix``: from the transformed outline where an object has one (resampled
    to ``samples`` points, only points inside the output counted), else from the 4 transformed corners,
    clipped. The outlines are done together: vertices transformed first (an affine map commutes with the
    linear resampling), then every outline's points interpolated at once."""
    oh, ow = out_size
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)  # (x1y1, x2y1, x2y2, x1y2) per box
    corners = (np.c_[corners, np.ones(len(corners))] @ matrix.T)[:, :2].reshape(-1, 8)
    xs, ys = corners[:, 0::2], corners[:, 1::2]
    warped = np.clip(np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], 1), 0, [ow, oh, ow, oh])
    which = [i for i, p in enumerate(polygons or ()) if p is not None and len(p)]
    if which:
        outlines = [np.asarray(polygons[i], np.float64) for i in which]
        lengths = np.array([len(p) for p in outlines])
        starts = np.r_[0, np.cumsum(lengths)[:-1]][:, None]
        vertices = np.concatenate(outlines) @ matrix[:2, :2].T + matrix[:2, 2]
        t = np.linspace(0, 1, samples)[None] * (lengths - 1)[:, None]  # resample_polygon's positions
        low = np.clip(np.floor(t).astype(np.int64), 0, np.maximum(lengths - 2, 0)[:, None])
        high = np.minimum(low + 1, (lengths - 1)[:, None])
        frac = (t - low)[..., None]
        points = vertices[starts + low] * (1 - frac) + vertices[starts + high] * frac  # [m, samples, 2]
        x, y = points[..., 0], points[..., 1]
        inside = (x >= 0) & (y >= 0) & (x <= ow) & (y <= oh)
        extent = np.stack([np.where(inside, x, np.inf).min(1), np.where(inside, y, np.inf).min(1),
                           np.where(inside, x, -np.inf).max(1), np.where(inside, y, -np.inf).max(1)], 1)
        warped[which] = np.where(inside.any(1)[:, None], extent, 0.0)  # none inside: an empty box, dropped
    return warped.astype(np.float32)


def random_affine(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  out_size: tuple[int, int], degrees: float = 10.0, translate: float = 0.2,
                  scale: tuple[float, float] = (0.1, 2.0), shear: float = 2.0,
                  polygons: Optional[Sequence[Optional[np.ndarray]]] = None):
    """Warp the image and its boxes (see :func:`warp_boxes`), then keep boxes wider/taller than 2 px that
    kept more than 10% of their scaled area and have an aspect ratio under 20."""
    matrix, s = affine_matrix(rng, img.shape[:2], out_size, degrees, translate, scale, shear)
    oh, ow = out_size
    out = cv2.warpAffine(img, matrix[:2], (ow, oh), flags=cv2.INTER_LINEAR, borderValue=(FILL, FILL, FILL))
    if len(boxes) == 0:
        return out, *_empty()
    warped = warp_boxes(boxes, polygons, matrix, out_size)
    w0, h0 = (boxes[:, 2] - boxes[:, 0]) * s, (boxes[:, 3] - boxes[:, 1]) * s
    w1, h1 = warped[:, 2] - warped[:, 0], warped[:, 3] - warped[:, 1]
    aspect = np.maximum(w1 / (h1 + 1e-16), h1 / (w1 + 1e-16))
    keep = (w1 > 2) & (h1 > 2) & (w1 * h1 / (w0 * h0 + 1e-16) > 0.1) & (aspect < 20)
    return out, warped[keep], labels[keep]


def _tile_placement(i: int, xc: int, yc: int, w: int, h: int, tw: int, th: int):
    """Where tile ``i`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of size w×h lands on the
    2·tile canvas around (xc, yc), and which part of it shows: (x1, y1, x2, y2) on the canvas, (x, y) in it."""
    if i == 0:
        x1, y1, x2, y2 = max(xc - w, 0), max(yc - h, 0), xc, yc
        return (x1, y1, x2, y2), (w - (x2 - x1), h - (y2 - y1))
    if i == 1:
        x1, y1, x2, y2 = xc, max(yc - h, 0), min(xc + w, 2 * tw), yc
        return (x1, y1, x2, y2), (0, h - (y2 - y1))
    if i == 2:
        x1, y1, x2, y2 = max(xc - w, 0), yc, xc, min(2 * th, yc + h)
        return (x1, y1, x2, y2), (w - (x2 - x1), 0)
    x1, y1, x2, y2 = xc, yc, min(xc + w, 2 * tw), min(2 * th, yc + h)
    return (x1, y1, x2, y2), (0, 0)


def mosaic(samples: Sequence[dict], rng: np.random.Generator, tile: tuple[int, int], keep_ratio: bool = False):
    """Four samples on a 2·tile canvas around a random centre; each is resized to the tile (stretched, or
    fitted with its aspect kept). Returns (canvas, boxes, labels, polygons), coordinates clipped to it."""
    th, tw = tile
    canvas = np.full((2 * th, 2 * tw, 3), FILL, np.uint8)
    xc, yc = int(rng.uniform(0.5 * tw, 1.5 * tw)), int(rng.uniform(0.5 * th, 1.5 * th))
    all_boxes, all_labels, all_polygons = [], [], []
    for i, sample in enumerate(samples):
        h0, w0 = sample["img"].shape[:2]
        sy, sx = (th / h0, tw / w0) if not keep_ratio else (min(th / h0, tw / w0),) * 2
        img = cv2.resize(sample["img"], (int(w0 * sx), int(h0 * sy)), interpolation=cv2.INTER_LINEAR)
        h, w = img.shape[:2]
        (xa1, ya1, xa2, ya2), (xb1, yb1) = _tile_placement(i, xc, yc, w, h, tw, th)
        canvas[ya1:ya2, xa1:xa2] = img[yb1:yb1 + (ya2 - ya1), xb1:xb1 + (xa2 - xa1)]
        scale, shift = np.array([sx, sy], np.float32), np.array([xa1 - xb1, ya1 - yb1], np.float32)
        all_boxes.append(sample["boxes"] * np.tile(scale, 2) + np.tile(shift, 2))
        all_labels.append(sample["labels"])
        polygons = sample.get("polygons") or [None] * len(sample["boxes"])
        all_polygons += [None if p is None else np.clip(p * scale + shift, 0, [2 * tw, 2 * th]) for p in polygons]
    boxes = clip_boxes(np.concatenate(all_boxes), 2 * th, 2 * tw)
    return canvas, boxes, np.concatenate(all_labels), all_polygons


def mixup(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, other: dict, rng: np.random.Generator,
          scale: tuple[float, float] = (0.5, 1.5)):
    """Blend ``other`` 50/50 into ``img`` as the reference's copy-paste mixup: ``other`` is fitted into a
    114-filled canvas of img's size (top-left), the canvas is scaled by a random jitter and maybe flipped,
    placed at the top-left of a zero-filled area covering both, and a random img-sized window of it is
    blended in. Its boxes follow, clipped to the window (no filtering here: the caller's area filter)."""
    oh, ow = img.shape[:2]
    jitter = rng.uniform(*scale)
    flip = rng.random() > 0.5
    src = other["img"]
    ratio = min(oh / src.shape[0], ow / src.shape[1])
    canvas = np.full((oh, ow, 3), FILL, np.uint8)
    fitted = cv2.resize(src, (int(src.shape[1] * ratio), int(src.shape[0] * ratio)), interpolation=cv2.INTER_LINEAR)
    canvas[:fitted.shape[0], :fitted.shape[1]] = fitted
    canvas = cv2.resize(canvas, (int(ow * jitter), int(oh * jitter)))
    ratio *= jitter
    if flip:
        canvas = canvas[:, ::-1]
    ch, cw = canvas.shape[:2]
    padded = np.zeros((max(ch, oh), max(cw, ow), 3), np.uint8)
    padded[:ch, :cw] = canvas
    y0 = int(rng.integers(0, padded.shape[0] - oh)) if padded.shape[0] > oh else 0
    x0 = int(rng.integers(0, padded.shape[1] - ow)) if padded.shape[1] > ow else 0
    window = padded[y0:y0 + oh, x0:x0 + ow]
    other_boxes = np.clip(other["boxes"] * ratio, 0, [cw, ch, cw, ch])
    if flip:
        other_boxes[:, [0, 2]] = cw - other_boxes[:, [2, 0]]
    other_boxes = np.clip(other_boxes - [x0, y0, x0, y0], 0, [ow, oh, ow, oh]).astype(np.float32)
    blended = (0.5 * img.astype(np.float32) + 0.5 * window.astype(np.float32)).astype(np.uint8)
    return blended, np.concatenate([boxes, other_boxes]), np.concatenate([labels, other["labels"]])
