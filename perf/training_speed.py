"""Training speed on this CPU, one run: the data pipeline per worker against the model's iteration.

    python perf/training_speed.py [--images 64] [--samples 60] [--iters 6] [--out perf/results]

- Pipeline: the COCO recipe's train_pipeline (DAMO-YOLO-T's config: Mosaic → RandomAffine → MixUp →
  FilterBoxes → Resize 640 → RandomFlip → SADA → Pack) in one process (= one dataloader worker), on a
  synthetic set of 640×640 images whose objects have outlines, at an epoch in the middle of SADA's ramp.
  The same pipeline is timed with the outlines removed (boxes from the corners, the recipe before outline
  boxes) and without SADA, in alternating blocks of the same samples so machine drift hits every variant alike.
- Model: DAMO-YOLO-T at batch 8, 640×640, one training iteration (forward, losses, backward, SGD step)
  as the Runner runs it, with torch's threads as the machine gives them.
Prints images/s, the ratios (outline boxes / corner boxes, pipeline per worker / model) and writes
training_speed.md and training_speed.json under --out.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "train" / "configs" / "damoyolo_tinynasL20_T_8xb32-300e_coco.py"
SHARED_IMAGES = ROOT.parent / "shared" / "data" / "images"


def _dataset(data: Path, pipeline: list, outlines: bool):
    from mmengine.registry import DATASETS
    dataset = DATASETS.build(dict(type="DetectionTrainDataset", data_root=str(data), img_dir="train/",
                                  ann_file="annotations/instances_train.json", pipeline=pipeline))
    if not outlines:
        for record in dataset.coco.records:
            record["polygons"] = [None] * len(record["polygons"])
    return dataset


def time_pipelines(data: Path, samples: int, blocks: int, epoch: int) -> dict:
    from damo_yolo.training.config import load_config
    cfg = load_config(CONFIG)
    pipeline = cfg.train_dataloader.dataset.pipeline
    without_sada = [t for t in pipeline if t["type"] != "ScaleAwareBoxAugment"]
    variants = {"outline boxes + SADA (the recipe)": _dataset(data, pipeline, True),
                "corner boxes + SADA": _dataset(data, copy.deepcopy(pipeline), False),
                "outline boxes, no SADA": _dataset(data, without_sada, True),
                "corner boxes, no SADA": _dataset(data, copy.deepcopy(without_sada), False)}
    times = {k: [] for k in variants}
    for dataset in variants.values():
        dataset.set_epoch(epoch)
        dataset[0]  # warm the caches
    names = list(variants)
    for block in range(blocks):  # blocks of the same samples, each variant first in turn: drift hits all alike
        for name in names[block % 4:] + names[:block % 4]:
            dataset = variants[name]
            for i in range(samples):
                start = time.perf_counter()
                dataset[i % len(dataset)]
                times[name].append(time.perf_counter() - start)
    return {k: {"images_per_s": 1 / float(np.mean(v)), "ms_median": 1e3 * float(np.median(v))}
            for k, v in times.items()}


def time_model(iters: int) -> dict:
    import torch

    from damo_yolo.training.model import DAMOYOLODetector
    torch.manual_seed(0)
    model = DAMOYOLODetector("T", num_classes=80).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(0, 255, (8, 3, 640, 640)).astype(np.float32))
    samples = []
    for _ in range(8):
        xy = rng.uniform(0, 500, (6, 2))
        wh = rng.uniform(20, 140, (6, 2))
        samples.append({"boxes": torch.tensor(np.c_[xy, xy + wh], dtype=torch.float32),
                        "labels": torch.from_numpy(rng.integers(0, 80, 6))})
    times = []
    for i in range(iters + 1):
        start = time.perf_counter()
        losses = model(x, samples, mode="loss")
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i:  # the first iteration allocates
            times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    return {"batch": 8, "s_per_iter": seconds, "images_per_s": 8 / seconds, "torch_threads": torch.get_num_threads()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="synthetic 640 px training images to generate")
    parser.add_argument("--samples", type=int, default=100, help="pipeline samples per block")
    parser.add_argument("--blocks", type=int, default=8, help="blocks per variant (each variant first in turn)")
    parser.add_argument("--iters", type=int, default=6, help="model iterations timed (after one warm-up)")
    parser.add_argument("--epoch", type=int, default=142, help="the epoch sampled (SADA's ramp is at its middle)")
    parser.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    args = parser.parse_args(argv)
    import damo_yolo.training  # noqa: F401  registers the data set and transforms
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synthetic640"
        subprocess.run([sys.executable, "-m", "damo_yolo.data.synthetic", "--out", str(data), "--train",
                        str(args.images), "--val", "1", "--size", "640", "--backgrounds", str(SHARED_IMAGES)],
                       check=True, capture_output=True)
        pipelines = time_pipelines(data, args.samples, args.blocks, args.epoch)
    model = time_model(args.iters)
    speed = {k: v["images_per_s"] for k, v in pipelines.items()}
    recipe = speed["outline boxes + SADA (the recipe)"]
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "date": time.strftime("%Y-%m-%d"), "pipeline": pipelines, "model_T_batch8": model,
              "outline_over_corner_time": speed["corner boxes, no SADA"] / speed["outline boxes, no SADA"],
              "outline_over_corner_time_with_sada": speed["corner boxes + SADA"] / recipe,
              "recipe_over_previous_recipe_time": speed["corner boxes, no SADA"] / recipe,
              "pipeline_per_worker_over_model": recipe / model["images_per_s"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "training_speed.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Training speed ({result['machine']}, {result['date']})", "",
             f"`python perf/training_speed.py` — the T recipe's pipeline at epoch {args.epoch} on {args.images} "
             f"synthetic 640 px images, {args.blocks} blocks of {args.samples} samples per variant (the same samples, "
             f"each variant first in turn); one process = one worker.", "",
             "| pipeline | images/s per worker | median ms/image |", "|---|---|---|"]
    lines += [f"| {k} | {v['images_per_s']:.1f} | {v['ms_median']:.1f} |" for k, v in pipelines.items()]
    lines += ["", f"DAMO-YOLO-T training iteration, batch 8 at 640 ({model['torch_threads']} torch threads): "
              f"{model['s_per_iter']:.2f} s = {model['images_per_s']:.1f} images/s.", "",
              f"- outline boxes cost {100 * (result['outline_over_corner_time'] - 1):+.1f} % time over corner boxes "
              f"(the pipeline without SADA; target: at most +10 %)",
              f"- the same with SADA after them: {100 * (result['outline_over_corner_time_with_sada'] - 1):+.1f} %",
              f"- the recipe costs {100 * (result['recipe_over_previous_recipe_time'] - 1):+.1f} % time over the "
              f"previous one (corner boxes, no SADA)",
              f"- one worker makes {result['pipeline_per_worker_over_model']:.1f}x the images the model consumes "
              f"(the pipeline keeps up when this, times the workers, is at least 1)"]
    (args.out / "training_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
