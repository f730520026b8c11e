"""COCO box mAP as an mmengine metric (pycocotools), over predictions in original image pixels."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.registry import METRICS

from damo_client.results import coco_row

from ..data.coco import category_mapping
from ..evaluation import COCO_METRIC_NAMES, evaluate_coco_results


def detections_to_coco(result: dict, cat_ids: Sequence[int]) -> list[dict]:
    """One image's predictions (boxes xyxy, scores, labels) → COCO results dicts (bbox xywh)."""
    rows = zip(result["boxes"].tolist(), result["scores"].tolist(), result["labels"].tolist())
    return [coco_row(result["img_id"], cat_ids[int(label)], box, score) for box, score, label in rows]


def format_per_class(per_class: dict[str, float]) -> str:
    width = max([len(n) for n in per_class] + [5])
    rows = [f"{'class':<{width}}  AP@[.5:.95]"] + [f"{n:<{width}}  {ap:.4f}" for n, ap in per_class.items()]
    return "\n".join(rows)


@METRICS.register_module()
class CocoDetectionMetric(BaseMetric):
    default_prefix = "coco"

    def __init__(self, ann_file: str, class_names: Optional[Sequence[str]] = None, collect_device: str = "cpu",
                 prefix: Optional[str] = None, data_root: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ann_file = str(Path(data_root or "") / ann_file)
        categories = json.loads(Path(self.ann_file).read_text())["categories"]
        _, self.cat_ids = category_mapping(categories, class_names, self.ann_file)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for result in data_samples:  # one entry per image: mmengine gathers ranks by sample count
            self.results.append(detections_to_coco(result, self.cat_ids))

    def compute_metrics(self, results: list) -> dict:
        metrics = evaluate_coco_results(self.ann_file, [det for image in results for det in image])
        absent = [name for name in COCO_METRIC_NAMES if metrics[name] is None]
        note = f"\n{', '.join(absent)}: n/a (no object of that size in {self.ann_file})" if absent else ""
        print_log("\n" + metrics["summary"] + "\n" + format_per_class(metrics["per_class"]) + note, logger="current")
        return {name: round(metrics[name], 5) for name in COCO_METRIC_NAMES if metrics[name] is not None}
