"""Augmentations keep boxes on their objects, are deterministic per seed, and honour their settings."""
from __future__ import annotations

import numpy as np
import pytest

from damo_yolo.data.transforms import TrainTransform, hflip, mosaic, random_affine

RED = np.array([255, 0, 0], np.uint8)


def _sample(h=120, w=200, box=(40, 30, 110, 90)):
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = RED
    return {"img": img, "boxes": np.array([box], np.float32), "labels": np.array([3]), "img_id": 1}


def _red_fraction(img, box):
    x1, y1, x2, y2 = np.round(box).astype(int)
    patch = img[y1:y2, x1:x2].astype(int)
    return ((patch[..., 0] > 150) & (patch[..., 1] < 100)).mean()


def test_hflip_mirrors_boxes():
    s = _sample()
    img, boxes = hflip(s["img"], s["boxes"])
    assert boxes.tolist() == [[90.0, 30.0, 160.0, 90.0]] and _red_fraction(img, boxes[0]) == 1.0


def test_affine_without_rotation_keeps_boxes_tight():
    s = _sample()
    rng = np.random.default_rng(0)
    img, boxes, labels = random_affine(s["img"], s["boxes"], s["labels"], rng, (160, 160), degrees=0,
                                       translate=0.1, scale=(0.6, 1.2), shear=0)
    assert labels.tolist() == [3] and _red_fraction(img, boxes[0]) > 0.9


def test_mosaic_places_four_tiles_with_their_boxes():
    rng = np.random.default_rng(1)
    canvas, boxes, labels = mosaic([_sample()] * 4, rng, (100, 100))
    assert canvas.shape == (200, 200, 3) and len(boxes) == len(labels) <= 4
    for box in boxes:
        assert _red_fraction(canvas, box) > 0.9


@pytest.mark.parametrize("keep_ratio", [False, True])
def test_train_transform_output(keep_ratio):
    transform = TrainTransform((96, 128), mosaic_size=(128, 128), mosaic_prob=1.0, mixup_prob=1.0, degrees=0,
                               shear=0, scale=(0.8, 1.2), hsv_gains=None, keep_ratio=keep_ratio)
    load = lambda i: _sample()  # noqa: E731
    out = transform(load, 0, 4, np.random.default_rng(5))
    again = transform(load, 0, 4, np.random.default_rng(5))
    assert out["img"].shape == (96, 128, 3) and np.array_equal(out["img"], again["img"])
    assert np.array_equal(out["boxes"], again["boxes"])
    assert ((out["boxes"] >= 0) & (out["boxes"] <= [128, 96, 128, 96])).all()
    area = (out["boxes"][:, 2] - out["boxes"][:, 0]) * (out["boxes"][:, 3] - out["boxes"][:, 1])
    assert (area > 4).all() and set(out["labels"].tolist()) <= {3}


def test_no_augmentation_phase_is_a_plain_resize():
    transform = TrainTransform((60, 100), mosaic_prob=0.0, flip_prob=0.0, hsv_gains=None)
    out = transform(lambda i: _sample(), 0, 1, np.random.default_rng(0))
    assert out["boxes"].tolist() == [[20.0, 15.0, 55.0, 45.0]]  # the 200x120 → 100x60 stretch halves everything
    assert _red_fraction(out["img"], out["boxes"][0]) > 0.9
