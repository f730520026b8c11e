"""COCO mAP of a served model: every image of a COCO-format set sent through ``damo_client`` to the Triton
ensemble, the answers scored with pycocotools — the same scoring as training's and ``damo-test``'s."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from damo_client.evaluation import category_ids as category_ids_for

from .coco_eval import evaluate_coco_results


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


def evaluate_pipeline(onnx_path, serving, ann_file, img_dir, batch_size: int = 8) -> dict:
    """COCO metrics of a detector graph as the CPU target serves it, in this process: the served model's own
    pipeline (damo_yolo.serving.cpu_pipeline.CpuPipeline: the same decode, runtime, thresholds and NMS) on the
    images of ``ann_file``. What export measures an INT8 graph with before it ships one."""
    from damo_client.results import coco_row

    from ..serving.cpu_pipeline import CpuPipeline
    coco = json.loads(Path(ann_file).read_text())
    cat_ids = category_ids_for(serving.class_names, coco["categories"])
    pipeline = CpuPipeline(onnx_path, serving, max_batch_size=batch_size)
    results = []
    try:
        for start in range(0, len(coco["images"]), batch_size):
            chunk = coco["images"][start:start + batch_size]
            try:
                data = [(Path(img_dir) / im["file_name"]).read_bytes() for im in chunk]
            except OSError as exc:
                raise ValueError(f"{ann_file} names an image {img_dir} does not hold: {exc}") from None
            answer = pipeline.run({0: (data, *pipeline.thresholds(len(data)))})[0]
            if isinstance(answer, Exception):
                raise ValueError(f"images {start}-{start + len(chunk) - 1} of {ann_file}: {answer}")
            num, boxes, scores, classes = answer
            for i, im in enumerate(chunk):
                n = int(num[i][0])
                results += [coco_row(im["id"], cat_ids[int(c)], b, s)
                            for b, s, c in zip(boxes[i][:n], scores[i][:n], classes[i][:n])]
    finally:
        pipeline.close()
    return evaluate_coco_results(ann_file, results, image_ids=[im["id"] for im in coco["images"]])
