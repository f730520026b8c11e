"""`damo-demo`: serve the model repository and call it with the client CLI, end to end on this machine.

    damo-demo                       # triton_models/, results in demo_output/
    damo-demo --repo my_models --images photos/ --score-thr 0.4

1. makes demo images the default model knows — new synthetic scenes (seed 2026, never seen in training),
   with their ground truth — unless --images names a folder of your own;
2. starts tritonserver on free localhost ports with the repository;
3. runs ``damo-client detect`` on the images: a table per image, ``detections.json`` (COCO results style)
   and labelled copies in ``annotated/``;
4. stops the server and, for the synthetic images, says how many ground-truth shapes were found.
Exits 1 with a one-line reason when a step fails.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
DEMO_SEED = 2026
MARKER = ".damo-demo-output"  # marks a folder the demo owns: its earlier results are replaced, not mixed in


def prepare_out(out: Path) -> None:
    """An empty result folder: a new one, or one of an earlier demo run (whose results are removed); a folder
    holding anything else is refused rather than cleared."""
    import shutil
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(f"--out {out} holds files the demo did not write: choose a new or empty folder")
    for name in ("images", "annotated", "detections.json", "tritonserver.log"):
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("results of damo-demo: replaced by the next run\n")


def make_demo_images(out: Path, count: int, size: int) -> Path:
    """Synthetic scenes (and their instances json) in ``out/images``; returns the json path."""
    from damo_yolo.data.synthetic import DEFAULT_BACKGROUNDS, generate_split, load_backgrounds
    return generate_split(out, "images", count, (size, size), DEMO_SEED, load_backgrounds(DEFAULT_BACKGROUNDS))


def found_ground_truth(annotations: Path, detections: list[dict], iou: float = 0.5) -> tuple[int, int]:
    """(ground-truth boxes matched by a detection of the same class at IoU ≥ iou, ground-truth boxes)."""
    import numpy as np

    from damo_yolo.postprocess import box_iou
    coco = json.loads(annotations.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    ids = {im["id"]: im["file_name"] for im in coco["images"]}
    found = 0
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        same = [det["bbox"] for det in detections
                if det.get("file_name") == ids[ann["image_id"]] and det["category_name"] == names[ann["category_id"]]]
        boxes = np.array([(dx, dy, dx + dw, dy + dh) for dx, dy, dw, dh in same]).reshape(-1, 4)
        found += bool(len(same)) and bool((box_iou(np.array([x, y, x + w, y + h]), boxes) >= iou).any())
    return found, len(coco["annotations"])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="damo-demo", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT / "triton_models", help="model repository to serve")
    parser.add_argument("--out", type=Path, default=Path("demo_output"),
                        help="results folder (an earlier demo's results there are replaced)")
    parser.add_argument("--images", type=Path, default=argparse.SUPPRESS,
                        help="a folder of your own images (default: synthetic scenes)")
    parser.add_argument("--count", type=int, default=6, help="synthetic scenes to make")
    parser.add_argument("--score-thr", type=float, default=argparse.SUPPRESS,
                        help="score threshold of the detections shown (default: the repository's served default)")
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http", help="how the client calls the server")
    args = parser.parse_args(argv)
    args.images = getattr(args, "images", None)

    from damo_yolo.serving.repository import validate_repository
    from damo_yolo.serving.tritonserver import LocalServer
    try:
        validate_repository(args.repo)
    except ValueError as exc:
        print(f"damo-demo: {exc}\n  make one with: damo-export CHECKPOINT --out {args.repo}", file=sys.stderr)
        return 1
    try:
        prepare_out(args.out)
    except FileExistsError as exc:
        print(f"damo-demo: {exc}", file=sys.stderr)
        return 1
    annotations = None
    if args.images is None:
        annotations = make_demo_images(args.out, args.count, 416)
        images = args.out / "images"
        print(f"{args.count} synthetic scenes (seed {DEMO_SEED}) in {images}")
    else:
        images = args.images
    server = LocalServer(args.repo, args.out / "tritonserver.log")
    print(f"starting tritonserver with {args.repo} ...", flush=True)
    try:
        server.start()
    except RuntimeError as exc:
        print(f"damo-demo: {str(exc).splitlines()[0]} (see {server.log_path})", file=sys.stderr)
        return 1
    try:
        url = server.http_url if args.protocol == "http" else server.grpc_url
        cmd = [str(Path(sys.executable).parent / "damo-client"), "detect", str(images), "--url", url,
               "--protocol", args.protocol, *(["--score-thr", str(args.score_thr)] if "score_thr" in args else []),
               "--json", str(args.out / "detections.json"), "--save-dir", str(args.out / "annotated")]
        print("$ damo-client " + " ".join(cmd[1:]), flush=True)
        code = subprocess.call(cmd)
    finally:
        server.stop()
    if code != 0:
        print(f"damo-demo: damo-client detect failed (exit code {code})", file=sys.stderr)
        return 1
    if annotations is not None:
        found, total = found_ground_truth(annotations, json.loads((args.out / "detections.json").read_text()))
        print(f"found {found} of the {total} shapes in the scenes (same class, IoU >= 0.5)")
    print(f"results: {args.out / 'detections.json'}, labelled images in {args.out / 'annotated'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
