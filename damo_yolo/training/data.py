"""mmengine data sets for DAMO-YOLO: training samples through the config's ``pipeline`` of registered
transforms (:mod:`damo_yolo.training.pipeline`), validation samples through the inference preprocessing
(the same code the serving backend uses), and their collate function.

A training sample is a pure function of (seed, epoch, index): its transforms draw from one generator seeded
with those three, so runs are reproducible and a resumed run sees exactly the samples the interrupted one
would have.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.dataset import Compose
from mmengine.registry import DATASETS, FUNCTIONS
from torch.utils.data import Dataset

from ..data.coco import CocoDetection
from ..data.preprocess import resize_image
from .pipeline import to_chw  # the module registers the transforms too


def data_path(data_root: Optional[str], path: str) -> Path:
    """``path`` under ``data_root`` (an absolute ``path`` stays as it is)."""
    return Path(data_root or "") / path


@DATASETS.register_module()
class DetectionTrainDataset(Dataset):
    def __init__(self, ann_file: str, img_dir: str, pipeline: Sequence, class_names=None, seed: int = 0,
                 data_root: Optional[str] = None):
        self.coco = CocoDetection(data_path(data_root, ann_file), data_path(data_root, img_dir), class_names)
        self.pipeline = Compose(pipeline)  # PipelineSwitchHook replaces it for the last epochs
        self.seed, self.epoch = int(seed), 0

    @property
    def metainfo(self) -> dict:
        return {"classes": tuple(self.coco.class_names)}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.coco)

    def load_sample(self, index: int) -> dict:
        """Sample ``index`` as read (for the transforms that mix in other images)."""
        return self.coco.load(index)

    def num_objects(self, index: int) -> int:
        return len(self.coco.records[index]["labels"])

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return self.pipeline(dict(self.coco.load(index), rng=rng, dataset=self, epoch=self.epoch))


@DATASETS.register_module()
class DetectionValDataset(Dataset):
    """Images resized as at inference (stretch, or letterbox with ``keep_ratio``) plus the mapping back."""

    def __init__(self, ann_file: str, img_dir: str, input_size: Sequence[int], class_names=None,
                 keep_ratio: bool = False, pad_value: float = 0.0, data_root: Optional[str] = None):
        self.coco = CocoDetection(data_path(data_root, ann_file), data_path(data_root, img_dir), class_names)
        self.input_size = tuple(input_size)
        self.mode, self.pad_value = ("letterbox" if keep_ratio else "stretch"), pad_value

    @property
    def metainfo(self) -> dict:
        return {"classes": tuple(self.coco.class_names)}

    def __len__(self) -> int:
        return len(self.coco)

    def __getitem__(self, index: int) -> dict:
        sample = self.coco.load(index)
        resized, info = resize_image(sample["img"], self.input_size, self.mode, self.pad_value)
        return {"inputs": to_chw(resized),
                "data_samples": {"img_id": sample["img_id"], "scale": (info.scale_y, info.scale_x),
                                 "orig_size": (info.orig_h, info.orig_w)}}


@FUNCTIONS.register_module()
def collate_detections(batch: list[dict]) -> dict:
    """Stack images as float32 (RGB 0–255) and keep per-image targets/metadata as a list."""
    return {"inputs": torch.stack([b["inputs"] for b in batch]).float(),
            "data_samples": [b["data_samples"] for b in batch]}
