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

import json
from pathlib import Path
from typing import Optional

import click

from damo_yolo.cli import CONTEXT, run


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


@click.command(context_settings=CONTEXT)
@click.version_option(package_name="damo-yolo", prog_name="damo-test")
@click.argument("config", type=click.Path(path_type=Path))
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--ann-file", type=click.Path(path_type=Path),
              help="Instances json to evaluate on [default: the config's test set].")
@click.option("--img-dir", type=click.Path(path_type=Path),
              help="Image folder of --ann-file [default: the folder of --ann-file].")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images per forward pass.")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="Data loading processes (0: load in this process).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the detections as COCO results json.")
@click.option("--trusted", is_flag=True, help="Allow pickled Python objects in the checkpoint.")
@click.option("--served-postprocess", is_flag=True,
              help="Post-process as the serving backend (at most 1,000 candidates into NMS, boxes clipped to the "
                   "image) instead of the reference's evaluation protocol.")
def cli(config: Path, checkpoint: Path, ann_file: Optional[Path], img_dir: Optional[Path], batch_size: int,
        workers: int, json_out: Optional[Path], trusted: bool, served_postprocess: bool) -> None:
    """Evaluate CHECKPOINT on the test set of CONFIG (COCO mAP with pycocotools).

    \b
        damo-test train/configs/damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py work_dirs/x/best.pth
        damo-test CONFIG damoyolo_tinynasL25_S.pth --ann-file val.json --img-dir images/ --json dets.json

    \b
    CHECKPOINT: the project's own (best.pth, latest.pth), an mmengine one from damo-train or an
    official DAMO-YOLO .pth. Prints COCO mAP and per-class AP; exits 1 with a one-line reason when the
    config, checkpoint or data cannot be used.
    """
    from damo_yolo.fileio import checkpoint_file_problem, missing_file
    problem = missing_file(config, "config") or checkpoint_file_problem(checkpoint)  # before the heavy imports
    if problem:
        raise click.ClickException(problem)
    if ann_file is not None and not ann_file.is_file():
        raise click.ClickException(f"annotation file not found: {ann_file}")
    if ann_file is not None and not (img_dir or ann_file.parent).is_dir():
        raise click.ClickException(f"image folder not found: {img_dir}")

    import damo_yolo.training  # noqa: F401
    from damo_yolo.data.coco import DataError
    from damo_yolo.models import CheckpointError
    from damo_yolo.training.config import ConfigError, load_config
    try:
        cfg = load_config(config)
        if ann_file is not None:  # paths as given on the command line, not under the config's data_root
            cfg.test_dataloader.dataset.update(data_root=None, ann_file=str(ann_file),
                                               img_dir=str(img_dir or ann_file.parent))
        metrics = evaluate(cfg, str(checkpoint), batch_size, workers, None if json_out is None else str(json_out),
                           trusted, served_postprocess)
    except (CheckpointError, ConfigError, DataError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    from damo_client.evaluation import format_figure
    from damo_yolo.evaluation import COCO_METRIC_NAMES
    click.echo(" ".join(f"{k}={format_figure(metrics[k])}" for k in COCO_METRIC_NAMES)
               + (" (n/a: no object of that size in the set)" if None in map(metrics.get, COCO_METRIC_NAMES) else ""))


def main(argv: Optional[list[str]] = None) -> int:
    """`damo-test` with ``argv`` (default: the command line); returns the exit code (2: a usage error)."""
    return run(cli, argv, "damo-test")


if __name__ == "__main__":
    raise SystemExit(main())
