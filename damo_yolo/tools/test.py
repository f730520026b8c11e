"""`damo-test`: evaluate a checkpoint on a COCO-format data set with pycocotools.

    damo-test train/configs/damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py work_dirs/x/best.pth
    damo-test CONFIG damoyolo_tinynasL25_S.pth --ann-file val.json --img-dir images/ --json dets.json

The checkpoint may be the project's own (``best.pth``/``latest.pth``), an mmengine one from
``damo-train`` or an official DAMO-YOLO ``.pth``. Detections are post-processed by the reference's
evaluation protocol (every candidate into NMS, boxes as predicted); ``--served-postprocess`` applies the
serving backend's guards instead (what the accuracy gate compares the served model with). Prints COCO mAP
(and per-class AP); exits 1 with a one-line reason when the config, checkpoint or data cannot be used.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional


def evaluate(cfg, checkpoint: str, batch_size: int = 8, num_workers: int = 2, json_out: Optional[str] = None,
             trusted: bool = False, served_postprocess: bool = False) -> dict:
    """Run the model of ``cfg`` with ``checkpoint`` over cfg.test_dataloader's data set; COCO metrics by the
    reference's protocol (or, with ``served_postprocess``, post-processed as the serving backend does)."""
    import torch
    from mmengine.registry import DATASETS, MODELS

    from damo_yolo.evaluation import evaluate_coco_results
    from damo_yolo.models import CheckpointError, load_model
    from damo_yolo.training.data import collate_detections
    from damo_yolo.training.metric import detections_to_coco, format_per_class

    detector, _ = load_model(checkpoint, variant=cfg.model.get("variant"), trusted=trusted)
    try:  # the config's thresholds and post-processing around the checkpoint's detector
        model = MODELS.build({**cfg.model, "teacher": None, "finetune": None, "detector": detector,
                              "served_postprocess": served_postprocess}).eval()
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {checkpoint} does not fit the config: {exc}") from exc
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=collate_detections)
    results = []
    with torch.inference_mode():
        for batch in loader:
            for det in model(batch["inputs"], batch["data_samples"], mode="predict"):
                results.extend(detections_to_coco(det, dataset.coco.cat_ids))
    if json_out:
        Path(json_out).write_text(json.dumps(results))
    metrics = evaluate_coco_results(dataset.coco.ann_file, results,
                                    image_ids=[r["img_id"] for r in dataset.coco.records])
    print(metrics["summary"])
    print(format_per_class(metrics["per_class"]))
    return metrics


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="damo-test", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the training config (model and test data)")
    parser.add_argument("checkpoint", help="checkpoint to evaluate")
    parser.add_argument("--ann-file", help="instances json (default: the config's test set)")
    parser.add_argument("--img-dir", help="image folder of --ann-file")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", dest="json_out", help="also write the detections as COCO results json")
    parser.add_argument("--trusted", action="store_true", help="allow pickled Python objects in the checkpoint")
    parser.add_argument("--served-postprocess", action="store_true",
                        help="post-process as the serving backend (at most 1,000 candidates into NMS, boxes clipped "
                             "to the image) instead of the reference's evaluation protocol")
    args = parser.parse_args(argv)
    import damo_yolo.training  # noqa: F401
    from damo_yolo.data.coco import DataError
    from damo_yolo.models import CheckpointError
    from damo_yolo.training.config import ConfigError, load_config
    try:
        cfg = load_config(args.config)
        if args.ann_file:  # paths as given on the command line, not under the config's data_root
            cfg.test_dataloader.dataset.update(data_root=None, ann_file=args.ann_file,
                                               img_dir=args.img_dir or str(Path(args.ann_file).parent))
        metrics = evaluate(cfg, args.checkpoint, args.batch_size, args.workers, args.json_out, args.trusted,
                           args.served_postprocess)
    except (CheckpointError, ConfigError, DataError, FileNotFoundError) as exc:
        print(f"damo-test: {exc}", file=sys.stderr)
        return 1
    print(" ".join(f"{k}={metrics[k]:.4f}" for k in ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
