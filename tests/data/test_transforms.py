"""Augmentations keep boxes on their objects, take rotated boxes from the objects' outlines as the reference
does, are deterministic per seed, and compose from a config's pipeline."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from mmengine.dataset import Compose

import damo_yolo.training  # noqa: F401  registers the transforms
from damo_yolo.data.transforms import (
    affine_matrix,
    hflip,
    mixup,
    mosaic,
    polygon_box,
    random_affine,
    resample_polygon,
    warp_boxes,
)

RED = np.array([255, 0, 0], np.uint8)


def _sample(h=120, w=200, box=(40, 30, 110, 90)):
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = RED
    return {"img": img, "boxes": np.array([box], np.float32), "labels": np.array([3]), "img_id": 1,
            "polygons": [None]}


def _red_fraction(img, box):
    x1, y1, x2, y2 = np.round(box).astype(int)
    patch = img[y1:y2, x1:x2].astype(int)
    return ((patch[..., 0] > 150) & (patch[..., 1] < 100)).mean()


def _ellipse(cx=100.0, cy=60.0, a=60.0, b=20.0, angle=0.0, n=72):
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = a * np.cos(t), b * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1).astype(np.float32)


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


def test_a_rotated_ellipse_gets_the_extent_of_its_transformed_outline():
    outline = _ellipse()
    box = np.r_[outline.min(0), outline.max(0)][None].astype(np.float32)
    matrix, _ = affine_matrix(np.random.default_rng(3), (120, 200), (200, 200), 10.0, 0.0, (1.0, 1.0), 2.0)
    assert abs(math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))) > 3  # a real rotation
    from_outline = warp_boxes(box, [outline], matrix, (200, 200))[0]
    # the reference's rule: the extent of the outline resampled to 1000 points, then transformed
    resampled = np.c_[resample_polygon(outline), np.ones(1000)] @ matrix[:2].T
    assert np.allclose(from_outline, polygon_box(resampled, 200, 200), rtol=0, atol=1e-4)
    # which is the true extent of the rotated ellipse to within the resampling step
    dense = np.c_[_ellipse(n=20000), np.ones(20000)] @ matrix[:2].T
    truth = np.r_[dense.min(0), dense.max(0)]
    assert np.abs(from_outline - truth).max() < 0.2
    from_corners = warp_boxes(box, [None], matrix, (200, 200))[0]  # an object without an outline
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    assert area(from_corners) > 1.1 * area(from_outline)  # the corner box of a rotated ellipse is loose
    assert (from_corners[:2] <= from_outline[:2]).all() and (from_corners[2:] >= from_outline[2:]).all()


def test_outline_points_outside_the_output_do_not_count():
    outline = np.array([[-50, 10], [30, 10], [30, 40], [-50, 40]], np.float32)
    box = polygon_box(np.c_[resample_polygon(outline), np.ones(1000)][:, :2], 100, 100)
    assert box[0] == pytest.approx(0, abs=0.25) and box[2] == 30  # within a resampling step (80 px / 333)
    assert box[1] == 10 and box[3] == 40
    assert polygon_box(outline - 500, 100, 100).tolist() == [0, 0, 0, 0]  # wholly outside: dropped later


def test_mosaic_places_four_tiles_with_their_boxes_and_outlines():
    rng = np.random.default_rng(1)
    sample = _sample()
    sample["polygons"] = [np.array([[40, 30], [110, 30], [110, 90], [40, 90]], np.float32)]
    canvas, boxes, labels, polygons = mosaic([sample] * 4, rng, (100, 100))
    assert canvas.shape == (200, 200, 3) and len(boxes) == len(labels) == len(polygons) == 4
    for box, outline in zip(boxes, polygons):
        if box[2] - box[0] > 1 and box[3] - box[1] > 1:
            assert _red_fraction(canvas, box) > 0.9
        assert outline.min() >= 0 and outline.max() <= 200
        visible = np.clip(outline, [box[0], box[1]], [box[2], box[3]])
        assert np.allclose(np.r_[visible.min(0), visible.max(0)], box, atol=1e-4)


def test_mixup_is_the_reference_copy_paste():
    img = np.full((100, 100, 3), 200, np.uint8)
    other = _sample(h=50, w=100, box=(10, 10, 30, 40))
    rng = np.random.default_rng(0)
    for _ in range(20):
        out, boxes, labels = mixup(img, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), other, rng, (0.5, 0.6))
        # jitter < 1: the 114-filled canvas covers ~55 px; outside it the partner is zeros (blend: 100)
        assert (out[90:, 90:] == 100).all()
        assert labels.tolist() == [3] and ((boxes >= 0) & (boxes <= 100)).all()
        x1, y1, x2, y2 = boxes[0]
        if x2 - x1 > 3 and y2 - y1 > 3:
            patch = out[int(y1) + 1:int(y2) - 1, int(x1) + 1:int(x2) - 1].astype(int)
            assert (abs(patch[..., 0] - (200 + 255) // 2) <= 2).mean() > 0.9  # red blended on grey


def _pipeline_dataset(samples):
    class Source:
        def __len__(self):
            return len(samples)

        def load_sample(self, i):
            return dict(samples[i])

        def num_objects(self, i):
            return len(samples[i]["boxes"])
    return Source()


RECIPE = [dict(type="Mosaic", img_scale=(128, 128)),
          dict(type="RandomAffine", img_scale=(128, 128), scaling_ratio_range=(0.8, 1.2)),
          dict(type="MixUp", prob=1.0),
          dict(type="FilterBoxes", min_area=4.0),
          dict(type="Resize", scale=(96, 128)),
          dict(type="RandomFlip", prob=0.5),
          dict(type="ScaleAwareBoxAugment", ramp_epochs=2),
          dict(type="PackDetInputs")]


@pytest.mark.parametrize("keep_ratio", [False, True])
def test_the_recipe_pipeline_is_deterministic_and_bounded(keep_ratio):
    steps = [dict(t, keep_ratio=keep_ratio) if t["type"] == "Resize" else t for t in RECIPE]
    pipeline, source = Compose(steps), _pipeline_dataset([_sample()] * 4)
    run = lambda seed: pipeline(dict(_sample(), rng=np.random.default_rng(seed), dataset=source, epoch=1))  # noqa
    out, again = run(5), run(5)
    assert tuple(out["inputs"].shape) == (3, 96, 128) and (out["inputs"] == again["inputs"]).all()
    boxes = out["data_samples"]["boxes"].numpy()
    assert np.array_equal(boxes, again["data_samples"]["boxes"].numpy())
    assert ((boxes >= 0) & (boxes <= [128, 96, 128, 96])).all()
    assert set(out["data_samples"]["labels"].tolist()) <= {3}


def test_the_last_stage_pipeline_is_a_plain_resize():
    pipeline = Compose([dict(type="Resize", scale=(60, 100)), dict(type="RandomFlip", prob=0.0),
                        dict(type="PackDetInputs")])
    out = pipeline(dict(_sample(), rng=np.random.default_rng(0), epoch=9))
    boxes = out["data_samples"]["boxes"].numpy()
    assert boxes.tolist() == [[20.0, 15.0, 55.0, 45.0]]  # the 200x120 → 100x60 stretch halves everything
    assert _red_fraction(out["inputs"].numpy().transpose(1, 2, 0), boxes[0]) > 0.9


def test_synthetic_objects_have_outlines_and_rotation_tightens_their_boxes(tiny_synthetic):
    """On the synthetic set's objects under the recipe's ±10° rotation, boxes from the outlines are
    tighter than boxes from the corners (measured here: the mean area ratio and IoU are printed)."""
    from damo_yolo.data.coco import CocoDetection
    coco = CocoDetection(tiny_synthetic / "annotations" / "instances_train.json", tiny_synthetic / "train")
    ann = json.loads((tiny_synthetic / "annotations" / "instances_train.json").read_text())["annotations"]
    assert ann and all(a["segmentation"] for a in ann)
    rng = np.random.default_rng(0)
    ratios, ious = [], []
    for i in range(len(coco)):
        sample = coco.load(i)
        assert all(p is not None for p in sample["polygons"])
        matrix, _ = affine_matrix(rng, (128, 128), (128, 128), 10.0, 0.0, (1.0, 1.0), 2.0)
        corners = warp_boxes(sample["boxes"], None, matrix, (128, 128))
        outlines = warp_boxes(sample["boxes"], sample["polygons"], matrix, (128, 128))
        for c, o in zip(corners, outlines):
            ac, ao = (c[2] - c[0]) * (c[3] - c[1]), (o[2] - o[0]) * (o[3] - o[1])
            if ao > 16:
                ratios.append(ac / ao)
                ious.append(ao / ac if (c[:2] <= o[:2] + 0.5).all() and (c[2:] >= o[2:] - 0.5).all() else 0.0)
    print(f"corner / outline box area: mean {np.mean(ratios):.3f}; IoU mean {np.mean(ious):.3f} over {len(ratios)}")
    assert np.mean(ratios) > 1.05 and min(ious) > 0.4


def test_outlines_done_together_equal_the_reference_rule_one_by_one():
    """warp_boxes transforms vertices, then resamples every outline at once; the reference resamples each
    outline, then transforms, then takes the extent of the points inside: the same boxes (float32 output)."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        matrix, _ = affine_matrix(rng, (300, 300), (200, 200), 10.0, 0.2, (0.5, 1.5), 2.0)
        outlines = [rng.uniform(-50, 350, (int(rng.integers(1, 40)), 2)).astype(np.float32) for _ in range(5)]
        boxes = np.array([[*p.min(0), *p.max(0)] for p in outlines], np.float32)
        together = warp_boxes(boxes, outlines, matrix, (200, 200))
        for box, outline in zip(together, outlines):
            one = polygon_box(np.c_[resample_polygon(outline), np.ones(1000)] @ matrix[:2].T, 200, 200)
            assert np.allclose(box, one, rtol=0, atol=1e-4)
