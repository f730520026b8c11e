"""Where the served default score threshold comes from: precision / recall / F1 at IoU 0.5 of the shipped
model (demo/model) on the synthetic val set, per score threshold, scored by pycocotools' own matching.

    damo-synthetic --out data/synthetic --train 0 --val 200 --size 320 --seed 0   # the demo's val split
    python perf/serving_thresholds.py --data data/synthetic --out perf/results

Writes thresholds.json and thresholds.md (the table and the threshold of best F1).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.03, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8)


def detections(checkpoint: Path, ann_file: Path, img_dir: Path, max_detections: int) -> list[dict]:
    """COCO results of the checkpoint on every val image (score > 0.01, the postprocess the server runs)."""
    import torch

    from damo_client.results import coco_row
    from damo_yolo.data.preprocess import decode_image, preprocess
    from damo_yolo.models import load_model
    from damo_yolo.postprocess import postprocess
    model, meta = load_model(checkpoint)
    model.eval()
    coco = json.loads(ann_file.read_text())
    cat_ids = sorted(c["id"] for c in coco["categories"])
    results = []
    for im in coco["images"]:
        chw, info = preprocess(decode_image((img_dir / im["file_name"]).read_bytes()), tuple(meta.input_size),
                               meta.resize, meta.pad_value)
        with torch.inference_mode():
            scores, boxes = model(torch.from_numpy(chw)[None])
        b, s, c = postprocess(scores[0].numpy(), boxes[0].numpy(), 0.01, meta.iou_threshold, max_detections)
        results += [coco_row(im["id"], cat_ids[int(cls)], box, score)
                    for box, score, cls in zip(info.to_original(b), s, c)]
    return results


def main() -> None:
    from damo_yolo.evaluation import precision_recall
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "demo/model/damoyolo_tinynasL18_Ns_synthetic.pth")
    parser.add_argument("--data", type=Path, default=ROOT / "data/synthetic")
    parser.add_argument("--max-detections", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "perf/results")
    args = parser.parse_args()
    ann = args.data / "annotations" / "instances_val.json"
    rows = precision_recall(ann, detections(args.checkpoint, ann, args.data / "val", args.max_detections),
                            THRESHOLDS, max_detections=args.max_detections)
    best = max(rows, key=lambda r: r["f1"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "thresholds.json").write_text(json.dumps({"rows": rows, "best_f1": best}, indent=1) + "\n")
    lines = ["# Served default score threshold", "",
             f"`{args.checkpoint.relative_to(ROOT) if args.checkpoint.is_relative_to(ROOT) else args.checkpoint}` "
             f"on the {len(json.loads(ann.read_text())['images'])} images of the synthetic val split (seed 0), "
             f"IoU 0.5, at most {args.max_detections} boxes per image, pycocotools matching. Made by "
             f"`perf/serving_thresholds.py`.", "",
             "| score > | precision | recall | F1 | boxes / image |", "|---|---|---|---|---|"]
    lines += [f"| {r['threshold']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
              f"{r['per_image']:.1f} |" for r in rows]
    lines += ["", f"Best F1: {best['f1']:.3f} at {best['threshold']:.2f} (precision {best['precision']:.3f}, recall "
                  f"{best['recall']:.3f}, {best['per_image']:.1f} boxes per image)."]
    (args.out / "thresholds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
