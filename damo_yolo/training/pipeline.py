"""The training pipeline as registered mmengine transforms, composed in a config's ``train_pipeline``.

A transform takes and returns the sample dict: ``img`` (H×W×3 uint8 RGB), ``boxes`` [n, 4] xyxy pixels,
``labels`` [n], ``polygons`` (outline or None per box), ``img_id``; and, from the data set, ``rng`` (the
sample's random generator: every draw comes from it), ``dataset`` (for the transforms that mix in other
images) and ``epoch``. The arithmetic lives in :mod:`damo_yolo.data.transforms`; these classes hold the
settings. The reference recipe (damo/dataset/datasets/mosaic_wrapper.py, damo/dataset/transforms/):

    Mosaic → RandomAffine → MixUp → FilterBoxes(area > 4) → Resize → RandomFlip → ScaleAwareBoxAugment → Pack

and for the last epochs (``PipelineSwitchHook``) ``Resize → RandomFlip → Pack``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.registry import TRANSFORMS

from ..data import transforms as T
from ..data.preprocess import resize_image
from ..data.sada import ScaleAwareBoxAugment


def to_chw(img: np.ndarray) -> torch.Tensor:
    """An H×W×3 image as the model's 3×H×W input tensor (same dtype)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def _pair(value: Sequence[int]) -> tuple[int, int]:
    return int(value[0]), int(value[1])


def _set(results: dict, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, polygons=None) -> dict:
    results.update(img=img, boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                   labels=np.asarray(labels, np.int64).reshape(-1), polygons=polygons)
    return results


@TRANSFORMS.register_module()
class Mosaic:
    """Four images (this one and three drawn at random) on a 2·``img_scale`` canvas, with ``prob``."""

    def __init__(self, img_scale: Sequence[int] = (640, 640), prob: float = 1.0, keep_ratio: bool = False):
        self.img_scale, self.prob, self.keep_ratio = _pair(img_scale), prob, keep_ratio

    def __call__(self, results: dict) -> dict:
        rng, dataset = results["rng"], results["dataset"]
        if rng.random() >= self.prob:
            return results
        others = [dataset.load_sample(int(i)) for i in rng.integers(0, len(dataset), 3)]
        img, boxes, labels, polygons = T.mosaic([results] + others, rng, self.img_scale, self.keep_ratio)
        return _set(results, img, boxes, labels, polygons)


@TRANSFORMS.register_module()
class RandomAffine:
    """Rotate, scale, shear and translate into ``img_scale``; boxes from the objects' outlines where they
    have one (else their corners), then the reference's box candidates filter."""

    def __init__(self, img_scale: Sequence[int] = (640, 640), max_rotate_degree: float = 10.0,
                 max_translate_ratio: float = 0.2, scaling_ratio_range: Sequence[float] = (0.1, 2.0),
                 max_shear_degree: float = 2.0):
        self.img_scale = _pair(img_scale)
        self.degrees, self.translate = max_rotate_degree, max_translate_ratio
        self.scale, self.shear = tuple(scaling_ratio_range), max_shear_degree

    def __call__(self, results: dict) -> dict:
        img, boxes, labels = T.random_affine(results["img"], results["boxes"], results["labels"], results["rng"],
                                             self.img_scale, self.degrees, self.translate, self.scale, self.shear,
                                             results.get("polygons"))
        return _set(results, img, boxes, labels)  # outlines are spent: what follows is axis-aligned


@TRANSFORMS.register_module()
class MixUp:
    """With ``prob``, and only on an image with objects, blend in a random image that has objects (the
    partner is redrawn until it has some, as the reference does, at most ``max_draws`` times)."""

    def __init__(self, prob: float = 0.15, scale: Sequence[float] = (0.5, 1.5), max_draws: int = 100):
        self.prob, self.scale, self.max_draws = prob, tuple(scale), max_draws

    def __call__(self, results: dict) -> dict:
        rng, dataset = results["rng"], results["dataset"]
        if len(results["boxes"]) == 0 or rng.random() >= self.prob:
            return results
        for _ in range(self.max_draws):
            index = int(rng.integers(0, len(dataset)))
            if dataset.num_objects(index):
                other = dataset.load_sample(index)
                img, boxes, labels = T.mixup(results["img"], results["boxes"], results["labels"], other, rng,
                                             self.scale)
                return _set(results, img, boxes, labels)
        return results


@TRANSFORMS.register_module()
class FilterBoxes:
    """Drop boxes of area ≤ ``min_area`` px² (the reference's filter after mosaic and mixup)."""

    def __init__(self, min_area: float = 4.0):
        self.min_area = min_area

    def __call__(self, results: dict) -> dict:
        keep = T.box_areas(results["boxes"]) > self.min_area
        polygons = results.get("polygons")
        return _set(results, results["img"], results["boxes"][keep], results["labels"][keep],
                    None if polygons is None else [p for p, k in zip(polygons, keep) if k])


@TRANSFORMS.register_module()
class Resize:
    """To ``scale`` (H, W): stretched (the reference), or letterboxed top-left with ``keep_ratio``."""

    def __init__(self, scale: Sequence[int] = (640, 640), keep_ratio: bool = False, pad_value: float = T.FILL):
        self.scale, self.keep_ratio, self.pad_value = _pair(scale), keep_ratio, pad_value

    def __call__(self, results: dict) -> dict:
        img, info = resize_image(results["img"], self.scale, "letterbox" if self.keep_ratio else "stretch",
                                 self.pad_value)
        boxes = T.clip_boxes(results["boxes"] * np.array([info.scale_x, info.scale_y] * 2, np.float32), *self.scale)
        return _set(results, img, boxes, results["labels"])


@TRANSFORMS.register_module()
class RandomFlip:
    """Mirror left-right with ``prob``."""

    def __init__(self, prob: float = 0.5):
        self.prob = prob

    def __call__(self, results: dict) -> dict:
        if results["rng"].random() < self.prob:
            img, boxes = T.hflip(results["img"], results["boxes"])
            return _set(results, img, boxes, results["labels"])
        return results


@TRANSFORMS.register_module()
class RandomHSV:
    """Hue, saturation and value scaled by 1 ± ``gains`` (not in the reference recipe; the synthetic
    config uses it)."""

    def __init__(self, gains: Sequence[float] = (0.015, 0.7, 0.4)):
        self.gains = tuple(gains)

    def __call__(self, results: dict) -> dict:
        results["img"] = T.random_hsv(results["img"], results["rng"], self.gains)
        return results


@TRANSFORMS.register_module(name="ScaleAwareBoxAugment")
class SADA:
    """SADA, the reference's scale-aware box-level augmentation (:mod:`damo_yolo.data.sada`). Its
    per-image probability ramps over the augmented epochs: progress is (epoch + ½) / ``ramp_epochs``, the
    reference's per-iteration ramp taken at each epoch's middle (within 1/(2·ramp_epochs) of it), so a
    sample stays a function of (seed, epoch, index). Beyond the ramp it does nothing, as the reference."""

    def __init__(self, ramp_epochs: int, **policy):
        self.ramp_epochs, self.augment = max(1, int(ramp_epochs)), ScaleAwareBoxAugment(**policy)

    def __call__(self, results: dict) -> dict:
        progress = (results.get("epoch", 0) + 0.5) / self.ramp_epochs
        boxes = np.c_[results["boxes"], results["labels"]]  # translate copies objects: their labels follow
        img, boxes = self.augment(results["img"], boxes, results["rng"], progress)
        return _set(results, img, boxes[:, :4], boxes[:, 4])


@TRANSFORMS.register_module()
class PackDetInputs:
    """The model's input: ``inputs`` (3×H×W uint8 tensor) and ``data_samples`` (boxes, labels, img_id)."""

    def __call__(self, results: dict) -> dict:
        return {"inputs": to_chw(results["img"]),
                "data_samples": {"boxes": torch.from_numpy(np.ascontiguousarray(results["boxes"], np.float32)),
                                 "labels": torch.from_numpy(np.ascontiguousarray(results["labels"], np.int64)),
                                 "img_id": results["img_id"]}}


def describe(pipeline: Optional[Sequence]) -> str:
    """``Mosaic → RandomAffine → ...``: the transform types of a pipeline config."""
    return " → ".join(str(t.get("type") if hasattr(t, "get") else type(t).__name__) for t in pipeline or [])
