"""`damo-zoo`: the model zoo at a glance, checked by building every variant.

Prints each variant's input size, parameter counts (training form and RepConv-fused, as the official zoo
counts them) next to the published figures, and, with ``--image``, runs one variant on a photograph.
"""
from __future__ import annotations

import argparse
import time

import cv2
import torch

from damo_yolo.data.preprocess import preprocess
from damo_yolo.models import build_model, list_models
from damo_yolo.models.zoo import ZOO_RESULTS


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="damo-zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="run --variant on this photograph (random weights: timing only)")
    parser.add_argument("--variant", default="Ns", help="variant for --image (default: Ns)")
    args = parser.parse_args(argv)

    print(f"{'variant':8} {'input':>8} {'params (train)':>15} {'params (fused)':>15} {'zoo':>7} {'zoo mAP':>8}")
    for name in list_models():
        model = build_model(name)
        unfused = count_params(model)
        fused = count_params(model.switch_to_deploy())
        h, w = model.cfg.input_size
        reported = ZOO_RESULTS.get(name)
        zoo, zoo_map = (f"{reported.params_m:.2f}M", f"{reported.coco_map:.1f}") if reported else ("-", "-")
        print(f"{name:8} {h:>4}x{w:<3} {unfused:>15,} {fused:>15,} {zoo:>7} {zoo_map:>8}")

    if args.image:
        bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
        if bgr is None:
            parser.error(f"cannot read image {args.image}")
        model = build_model(args.variant).switch_to_deploy().eval()
        chw, info = preprocess(bgr, model.cfg.input_size)
        x = torch.from_numpy(chw)[None]
        with torch.inference_mode():
            model(x)
            start = time.perf_counter()
            scores, boxes = model(x)
            elapsed = (time.perf_counter() - start) * 1e3
        print(f"\n{args.variant} on {args.image} ({info.orig_w}x{info.orig_h} → {x.shape[3]}x{x.shape[2]}): "
              f"scores {tuple(scores.shape)}, boxes {tuple(boxes.shape)}, {elapsed:.1f} ms on CPU "
              f"(untrained weights: no meaningful detections until a checkpoint is loaded)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
