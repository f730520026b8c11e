"""`damo-browse-dataset`: training samples as the config's pipeline makes them, with their boxes drawn.

    damo-browse-dataset train/configs/damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py --out browse/
    damo-browse-dataset CONFIG --epoch 20 --count 16            # SADA's probability ramps with the epoch
    damo-browse-dataset CONFIG --phase last                     # the last epochs' pipeline (PipelineSwitchHook)

Each sample is written as ``<index>_<img_id>.jpg`` at the model's input size, exactly what the model is fed
at that epoch (the same seed gives the same pictures as training).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="damo-browse-dataset", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("config", help="mmengine training config")
    parser.add_argument("--out", type=Path, default=Path("browse"), help="folder for the drawn samples")
    parser.add_argument("--count", type=int, default=12, help="samples to write")
    parser.add_argument("--epoch", type=int, default=0, help="the epoch whose samples to draw (0-based)")
    parser.add_argument("--phase", choices=["main", "last"], default="main",
                        help="main: train_pipeline; last: the pipeline of the last, no-augmentation epochs")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help="override config settings")
    args = parser.parse_args(argv)
    if args.count < 1 or args.epoch < 0:
        parser.error("--count must be at least 1 and --epoch at least 0")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    from damo_yolo.data.coco import DataError
    from damo_yolo.tools.train import _parse_options
    from damo_yolo.training.config import ConfigError, load_config
    try:
        cfg = load_config(args.config, _parse_options(args.cfg_options))
    except ConfigError as exc:
        print(f"damo-browse-dataset: {exc}", file=sys.stderr)
        return 1
    import cv2
    from mmengine.dataset import Compose
    from mmengine.registry import DATASETS

    import damo_yolo.training  # noqa: F401  registers the data set and transforms
    from damo_client.draw import annotate
    from damo_client.results import Detection
    from damo_yolo.training.pipeline import describe
    try:
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
    except DataError as exc:
        print(f"damo-browse-dataset: {exc}", file=sys.stderr)
        return 1
    if args.phase == "last":
        switch = next((h for h in cfg.custom_hooks if h["type"] == "PipelineSwitchHook"), None)
        if switch is None:
            print("damo-browse-dataset: the config has no PipelineSwitchHook (no last-phase pipeline)", file=sys.stderr)
            return 1
        dataset.pipeline = Compose(switch["switch_pipeline"])
    dataset.set_epoch(args.epoch)
    names = dataset.metainfo["classes"]
    args.out.mkdir(parents=True, exist_ok=True)
    for index in range(min(args.count, len(dataset))):
        sample = dataset[index]
        rgb = sample["inputs"].numpy().transpose(1, 2, 0)
        targets = sample["data_samples"]
        boxes = [Detection(tuple(float(v) for v in box), 1.0, int(label), names[int(label)])
                 for box, label in zip(targets["boxes"].tolist(), targets["labels"].tolist())]
        drawn = annotate(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), boxes, scores=False)
        cv2.imwrite(str(args.out / f"{index:04d}_{targets['img_id']}.jpg"), drawn)
    pipeline = cfg.train_dataloader.dataset.pipeline if args.phase == "main" else switch["switch_pipeline"]
    print(f"{min(args.count, len(dataset))} samples of epoch {args.epoch} ({describe(pipeline)}) → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
