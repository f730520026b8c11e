"""COCO mAP of a served model: every image of a COCO-format set sent through ``damo_client`` to the Triton
ensemble, the answers scored with pycocotools — the same scoring as training's and ``damo-test``'s."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from .coco_eval import evaluate_coco_results


def category_ids_for(class_names: Sequence[str], categories: Sequence[dict]) -> list[int]:
    """The data set's category id of each served class: by name when every name is known, else by the
    training convention (the i-th class is the i-th category id in ascending order)."""
    by_name = {c["name"]: c["id"] for c in categories}
    if class_names and all(n in by_name for n in class_names):
        return [by_name[n] for n in class_names]
    ids = sorted(c["id"] for c in categories)
    if class_names and len(class_names) != len(ids):
        raise ValueError(f"the served model has {len(class_names)} classes, the data set {len(ids)} categories")
    return ids


def served_coco_results(client, ann_file, img_dir, batch_size: int = 8) -> tuple[list[dict], list[int]]:
    """(COCO results of the served detections, the image ids sent) for the images of ``ann_file``."""
    coco = json.loads(Path(ann_file).read_text())
    client.connect()
    cat_ids = category_ids_for(client.class_names, coco["categories"])
    images = coco["images"]
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        answers = client.detect_batch([Path(img_dir) / im["file_name"] for im in chunk])
        for im, detections in zip(chunk, answers):
            results += [d.to_coco(im["id"], cat_ids[d.class_id]) for d in detections]
    return results, [im["id"] for im in images]


def evaluate_served(url: str, ann_file, img_dir, protocol: str = "http", model: str = "damo_yolo",
                    batch_size: int = 8, json_out: Optional[Path] = None) -> dict:
    """COCO metrics (mAP, mAP_50, ..., per_class, summary) of the model served at ``url``."""
    from damo_client import DamoClient
    with DamoClient(url, protocol, model) as client:
        results, image_ids = served_coco_results(client, ann_file, img_dir, batch_size)
    if json_out is not None:
        Path(json_out).write_text(json.dumps(results))
    return evaluate_coco_results(ann_file, results, image_ids=image_ids)
