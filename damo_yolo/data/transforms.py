"""Training augmentations of the DAMO-YOLO recipe (reference: damo/dataset/datasets/mosaic_wrapper.py and
damo/dataset/transforms/): mosaic, random affine, mixup, resize (stretch or letterbox), flip, HSV.

Every function takes its random generator, so a sample is a pure function of (seed, epoch, index).
Images are H×W×3 uint8 RGB; boxes are [n, 4] float32 xyxy pixels; labels [n] int64.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np

from .preprocess import resize_image

FILL = 114  # canvas colour of mosaic, affine borders and mixup


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)


def clip_boxes(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)


def filter_boxes(boxes: np.ndarray, labels: np.ndarray, min_area: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Drop boxes of area ≤ ``min_area`` px² (the reference's last filter)."""
    keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > min_area
    return boxes[keep], labels[keep]


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


def random_affine(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  out_size: tuple[int, int], degrees: float = 10.0, translate: float = 0.2,
                  scale: tuple[float, float] = (0.1, 2.0), shear: float = 2.0):
    """Warp the image and its boxes (by their 4 corners), then keep boxes wider/taller than 2 px that kept
    more than 10% of their scaled area and have an aspect ratio under 20."""
    matrix, s = affine_matrix(rng, img.shape[:2], out_size, degrees, translate, scale, shear)
    oh, ow = out_size
    out = cv2.warpAffine(img, matrix[:2], (ow, oh), flags=cv2.INTER_LINEAR, borderValue=(FILL, FILL, FILL))
    if len(boxes) == 0:
        return out, *_empty()
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)  # (x1y1, x2y1, x2y2, x1y2) per box
    corners = (np.c_[corners, np.ones(len(corners))] @ matrix.T)[:, :2].reshape(-1, 8)
    xs, ys = corners[:, 0::2], corners[:, 1::2]
    warped = clip_boxes(np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], 1), oh, ow)
    w0, h0 = (boxes[:, 2] - boxes[:, 0]) * s, (boxes[:, 3] - boxes[:, 1]) * s
    w1, h1 = warped[:, 2] - warped[:, 0], warped[:, 3] - warped[:, 1]
    aspect = np.maximum(w1 / (h1 + 1e-16), h1 / (w1 + 1e-16))
    keep = (w1 > 2) & (h1 > 2) & (w1 * h1 / (w0 * h0 + 1e-16) > 0.1) & (aspect < 20)
    return out, warped[keep], labels[keep]


def mosaic(samples: Sequence[dict], rng: np.random.Generator, tile: tuple[int, int]):
    """Four samples on a 2·tile canvas around a random centre; each is stretched to the tile size."""
    th, tw = tile
    canvas = np.full((2 * th, 2 * tw, 3), FILL, np.uint8)
    xc, yc = int(rng.uniform(0.5 * tw, 1.5 * tw)), int(rng.uniform(0.5 * th, 1.5 * th))
    all_boxes, all_labels = [], []
    for i, sample in enumerate(samples):
        img, info = resize_image(sample["img"], tile, "stretch")
        h, w = img.shape[:2]
        if i == 0:    # top-left
            xa1, ya1, xa2, ya2 = max(xc - w, 0), max(yc - h, 0), xc, yc
            xb1, yb1 = w - (xa2 - xa1), h - (ya2 - ya1)
        elif i == 1:  # top-right
            xa1, ya1, xa2, ya2 = xc, max(yc - h, 0), min(xc + w, 2 * tw), yc
            xb1, yb1 = 0, h - (ya2 - ya1)
        elif i == 2:  # bottom-left
            xa1, ya1, xa2, ya2 = max(xc - w, 0), yc, xc, min(2 * th, yc + h)
            xb1, yb1 = w - (xa2 - xa1), 0
        else:         # bottom-right
            xa1, ya1, xa2, ya2 = xc, yc, min(xc + w, 2 * tw), min(2 * th, yc + h)
            xb1, yb1 = 0, 0
        canvas[ya1:ya2, xa1:xa2] = img[yb1:yb1 + (ya2 - ya1), xb1:xb1 + (xa2 - xa1)]
        boxes = sample["boxes"] * np.array([info.scale_x, info.scale_y] * 2, np.float32)
        boxes = boxes + np.array([xa1 - xb1, ya1 - yb1] * 2, np.float32)
        all_boxes.append(boxes)
        all_labels.append(sample["labels"])
    boxes = clip_boxes(np.concatenate(all_boxes), 2 * th, 2 * tw)
    labels = np.concatenate(all_labels)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return canvas, boxes[keep], labels[keep]


def mixup(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, other: dict, rng: np.random.Generator,
          scale: tuple[float, float] = (0.5, 1.5)):
    """Blend ``other`` (letterboxed top-left, scale-jittered, maybe flipped, randomly offset) 50/50 into img."""
    oh, ow = img.shape[:2]
    jitter = rng.uniform(*scale)
    src = other["img"]
    r = min(oh / src.shape[0], ow / src.shape[1]) * jitter
    nh, nw = max(1, int(src.shape[0] * r)), max(1, int(src.shape[1] * r))
    resized = cv2.resize(src, (nw, nh), interpolation=cv2.INTER_LINEAR)
    other_boxes = other["boxes"] * np.array([nw / src.shape[1], nh / src.shape[0]] * 2, np.float32)
    if rng.random() < 0.5:
        resized, other_boxes = hflip(resized, other_boxes)
    ph, pw = max(nh, oh), max(nw, ow)
    padded = np.full((ph, pw, 3), FILL, np.uint8)
    padded[:nh, :nw] = resized
    y0 = int(rng.integers(0, ph - oh + 1))
    x0 = int(rng.integers(0, pw - ow + 1))
    crop = padded[y0:y0 + oh, x0:x0 + ow]
    other_boxes = clip_boxes(other_boxes - np.array([x0, y0, x0, y0], np.float32), oh, ow)
    keep = ((other_boxes[:, 2] - other_boxes[:, 0]) > 2) & ((other_boxes[:, 3] - other_boxes[:, 1]) > 2)
    blended = (0.5 * img.astype(np.float32) + 0.5 * crop.astype(np.float32)).astype(np.uint8)
    return blended, np.concatenate([boxes, other_boxes[keep]]), np.concatenate([labels, other["labels"][keep]])


class TrainTransform:
    """The per-sample recipe: [mosaic → affine → mixup] → resize → flip → HSV → CHW float32.

    ``mosaic_prob = 0`` (the last "no augmentation" epochs) leaves resize, flip and HSV.
    """

    def __init__(self, input_size: tuple[int, int], mosaic_size: Optional[tuple[int, int]] = (640, 640),
                 mosaic_prob: float = 1.0, mixup_prob: float = 0.15, degrees: float = 10.0, translate: float = 0.2,
                 scale: tuple[float, float] = (0.1, 2.0), shear: float = 2.0, mixup_scale=(0.5, 1.5),
                 flip_prob: float = 0.5, hsv_gains: Optional[Sequence[float]] = (0.015, 0.7, 0.4),
                 keep_ratio: bool = False, pad_value: float = FILL):
        self.input_size = tuple(input_size)
        self.mosaic_size = tuple(mosaic_size) if mosaic_size is not None else self.input_size  # None: the input size
        self.mosaic_prob, self.mixup_prob = mosaic_prob, mixup_prob
        self.degrees, self.translate, self.scale, self.shear = degrees, translate, tuple(scale), shear
        self.mixup_scale, self.flip_prob, self.hsv_gains = tuple(mixup_scale), flip_prob, hsv_gains
        self.keep_ratio, self.pad_value = keep_ratio, pad_value

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(input_size={self.input_size}, mosaic_prob={self.mosaic_prob}, "
                f"mixup_prob={self.mixup_prob}, degrees={self.degrees}, translate={self.translate}, "
                f"scale={self.scale}, shear={self.shear}, flip_prob={self.flip_prob}, hsv_gains={self.hsv_gains}, "
                f"keep_ratio={self.keep_ratio})")

    def __call__(self, load, index: int, num_samples: int, rng: np.random.Generator, augment: bool = True) -> dict:
        """``load(i)`` returns sample i (see CocoDetection.load); returns img HWC uint8, boxes, labels.
        ``augment=False`` leaves only resize and flip (the recipe's last, "no augmentation" epochs)."""
        sample = load(index)
        img, boxes, labels = sample["img"], sample["boxes"], sample["labels"]
        if augment and rng.random() < self.mosaic_prob:
            others = [load(int(i)) for i in rng.integers(0, num_samples, 3)]
            img, boxes, labels = mosaic([sample] + others, rng, self.mosaic_size)
            img, boxes, labels = random_affine(img, boxes, labels, rng, self.mosaic_size, self.degrees,
                                               self.translate, self.scale, self.shear)
            if rng.random() < self.mixup_prob:
                other = load(int(rng.integers(0, num_samples)))
                if len(other["boxes"]):
                    img, boxes, labels = mixup(img, boxes, labels, other, rng, self.mixup_scale)
        resized, info = resize_image(img, self.input_size, "letterbox" if self.keep_ratio else "stretch",
                                     self.pad_value)
        boxes = clip_boxes(boxes * np.array([info.scale_x, info.scale_y] * 2, np.float32), *self.input_size)
        if rng.random() < self.flip_prob:
            resized, boxes = hflip(resized, boxes)
        if augment and self.hsv_gains:
            resized = random_hsv(resized, rng, self.hsv_gains)
        boxes, labels = filter_boxes(boxes, labels)
        return {"img": resized, "boxes": boxes.astype(np.float32), "labels": labels.astype(np.int64),
                "img_id": sample["img_id"]}
