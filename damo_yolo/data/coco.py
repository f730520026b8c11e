"""COCO-format detection data: an instances json and an image folder.

Each object keeps its outline when the annotation has polygons (``segmentation`` as lists of points; the
parts of a multi-part polygon are joined into one list, as the reference reads them), so augmentations
that rotate or shear can take the box from the outline; an RLE mask or a box-only annotation has none.

Category ids map to contiguous labels 0..C−1 (by ``class_names`` when given, as the reference maps by
name; otherwise in category-id order) and back for evaluation. Crowd boxes are left out of training, as
the reference does. Problems in the data are reported once and handled the way COCO tools would:

- an image whose file is missing: a warning, and the image is left out;
- a box partly outside its image: clipped; a box of zero area (after clipping): a warning, and dropped;
- an image without annotations: kept as a background image;
- an image that cannot be decoded: a warning when it is met, and another sample is served instead, so an
  epoch never stops on it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import cv2
import numpy as np

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """A data set that cannot be used at all (the message says why)."""


def category_mapping(categories: list[dict], class_names: Optional[Sequence[str]] = None,
                     source: object = "annotations") -> tuple[list[str], list[int]]:
    """(class names, category ids) in contiguous-label order: by ``class_names`` when given (matched by
    name, as the reference does), otherwise all categories in id order."""
    categories = sorted(categories, key=lambda c: c["id"])
    if class_names is None:
        return [c["name"] for c in categories], [c["id"] for c in categories]
    by_name = {c["name"]: c["id"] for c in categories}
    unknown = [n for n in class_names if n not in by_name]
    if unknown:
        raise DataError(f"classes {unknown} are not categories of {source} (it has: {', '.join(sorted(by_name))})")
    return list(class_names), [by_name[n] for n in class_names]


def polygon_points(segmentation: Any) -> Optional[np.ndarray]:
    """A COCO polygon segmentation (a list of flat [x1, y1, x2, y2, ...] lists) as one [k, 2] float32 array
    of all its parts' points; None for an RLE mask, a missing or malformed one."""
    if not isinstance(segmentation, list):
        return None
    flat = [float(v) for part in segmentation if isinstance(part, list) for v in part]
    if len(flat) < 2 or len(flat) % 2:
        return None
    return np.array(flat, np.float32).reshape(-1, 2)


class CocoDetection:
    """Samples as dicts: ``img`` (H×W×3 uint8 RGB), ``boxes`` [n, 4] xyxy float32, ``labels`` [n] int64,
    ``polygons`` (one [k, 2] outline or None per box), ``img_id``, ``file_name``, ``orig_size`` (H, W)."""

    def __init__(self, ann_file: str | Path, img_dir: str | Path, class_names: Optional[Sequence[str]] = None,
                 skip_empty: bool = False):
        self.ann_file, self.img_dir = Path(ann_file), Path(img_dir)
        if not self.ann_file.is_file():
            raise DataError(f"annotation file not found: {self.ann_file}")
        if not self.img_dir.is_dir():
            raise DataError(f"image folder not found: {self.img_dir}")
        try:
            coco = json.loads(self.ann_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{self.ann_file} is not valid JSON: {exc}") from exc
        for key in ("images", "categories"):
            if not isinstance(coco.get(key), list):
                raise DataError(f"{self.ann_file} has no '{key}' list: not a COCO instances file")
        self.class_names, self.cat_ids = category_mapping(coco["categories"], class_names, self.ann_file)
        self.cat_to_label = {cid: i for i, cid in enumerate(self.cat_ids)}

        if not coco.get("annotations"):
            logger.warning("%s has no annotations: every image is a background image", self.ann_file.name)
        per_image: dict[int, list[dict]] = {}
        for ann in coco.get("annotations") or []:
            per_image.setdefault(ann.get("image_id"), []).append(ann)
        self.records: list[dict[str, Any]] = []
        missing, dropped, clipped = [], 0, 0
        for info in coco["images"]:
            path = self.img_dir / info["file_name"]
            if not path.is_file():
                missing.append(info["file_name"])
                continue
            h, w = int(info.get("height", 0)), int(info.get("width", 0))
            boxes, labels, polygons = [], [], []
            for ann in per_image.get(info["id"], []):
                if ann.get("iscrowd", 0) or ann.get("category_id") not in self.cat_to_label:
                    continue
                bbox = ann.get("bbox")
                if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
                    dropped += 1
                    continue
                x, y, bw, bh = (float(v) for v in bbox)
                box = np.array([x, y, x + bw, y + bh], np.float32)
                if w > 0 and h > 0:
                    clipped_box = np.clip(box, 0, [w, h, w, h])
                    clipped += int(not np.array_equal(clipped_box, box))
                    box = clipped_box
                if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
                    dropped += 1
                    continue
                boxes.append(box)
                labels.append(self.cat_to_label[ann["category_id"]])
                polygons.append(polygon_points(ann.get("segmentation")))
            if skip_empty and not boxes:
                continue
            self.records.append({
                "img_id": info["id"], "file_name": info["file_name"], "path": path, "height": h, "width": w,
                "boxes": np.array(boxes, np.float32).reshape(-1, 4), "labels": np.array(labels, np.int64),
                "polygons": polygons})
        if missing:
            logger.warning("%s: %d image file(s) listed but missing under %s, left out (first: %s)",
                           self.ann_file.name, len(missing), self.img_dir, ", ".join(missing[:3]))
        if clipped:
            logger.warning("%s: %d box(es) reach outside their image and were clipped", self.ann_file.name, clipped)
        if dropped:
            logger.warning("%s: %d box(es) of zero area or malformed were dropped", self.ann_file.name, dropped)
        if not self.records:
            raise DataError(f"{self.ann_file} lists no usable image under {self.img_dir}")
        self.bad_files: set[str] = set()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def read_image(self, index: int) -> Optional[np.ndarray]:
        """The RGB image of record ``index``, or None (with a one-time warning) if it cannot be decoded."""
        record = self.records[index]
        data = np.fromfile(record["path"], dtype=np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if bgr is None:
            if record["file_name"] not in self.bad_files:
                self.bad_files.add(record["file_name"])
                logger.warning("cannot decode image %s; serving another sample in its place", record["path"])
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def load(self, index: int) -> dict[str, Any]:
        """Sample ``index``; an undecodable image is replaced by the next decodable one."""
        for offset in range(len(self.records)):
            i = (index + offset) % len(self.records)
            img = self.read_image(i)
            if img is not None:
                record = self.records[i]
                h, w = img.shape[:2]
                boxes = record["boxes"].copy()
                if record["height"] != h or record["width"] != w:  # the json's size is wrong: trust the pixels
                    boxes = np.clip(boxes, 0, [w, h, w, h])
                return {"img": img, "boxes": boxes, "labels": record["labels"].copy(),
                        "polygons": list(record["polygons"]), "img_id": record["img_id"],
                        "file_name": record["file_name"], "orig_size": (h, w)}
        raise DataError(f"no image of {self.ann_file} can be decoded")

    def label_to_cat_id(self, label: int) -> int:
        return self.cat_ids[int(label)]
