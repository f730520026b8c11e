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

import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

import click

from damo_yolo import contract as C
from damo_yolo.cli import CONTEXT, run

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


def classes_note(class_names: tuple[str, ...]) -> str:
    """What a model trained on ``class_names`` can find in the user's own photos, said before it is run on them."""
    from damo_yolo.data.synthetic import CLASSES
    shown = ", ".join(class_names[:10]) + (", ..." if len(class_names) > 10 else "")
    if set(class_names) <= {c.name for c in CLASSES}:
        return (f"note: this model knows only the {len(class_names)} synthetic shapes it was trained on ({shown}): "
                f"on photos of anything else (a bus, a street) its boxes are expected nonsense, not a fault")
    return (f"note: this model knows only its {len(class_names)} classes ({shown}): anything else in the photos "
            f"goes undetected or gets a wrong label")


@click.command(context_settings=CONTEXT)
@click.version_option(package_name="damo-yolo", prog_name="damo-demo")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "triton_models",
              show_default=True, help="Model repository to serve.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo_output"),
              show_default=True, help="Results folder (an earlier demo's results there are replaced).")
@click.option("--images", type=click.Path(path_type=Path),
              help="Your own images: a folder of .jpg/.jpeg/.png files, or one file [default: synthetic scenes].")
@click.option("--count", type=click.IntRange(min=1), default=6, show_default=True, help="Synthetic scenes to make.")
@click.option("--score-thr", type=click.FloatRange(C.SCORE_RANGE.low, C.SCORE_RANGE.high, max_open=True),
              help="Score threshold of the detections shown [default: the repository's served default].")
@click.option("--protocol", type=click.Choice(["http", "grpc"]), default="http", show_default=True,
              help="How the client calls the server.")
def cli(repo: Path, out: Path, images: Optional[Path], count: int, score_thr: Optional[float], protocol: str) -> None:
    """Serve the model repository and call it with the client CLI, end to end on this machine.

    \b
        damo-demo                       # triton_models/, results in demo_output/
        damo-demo --repo my_models --images photos/ --score-thr 0.4

    \b
    1. makes demo images the default model knows (new synthetic scenes, seed 2026, never seen in
       training, with their ground truth) unless --images names your own;
    2. starts tritonserver on free localhost ports with the repository;
    3. runs damo-client detect on the images: a table per image, detections.json (COCO results
       style) and labelled copies in annotated/;
    4. stops the server and, for the synthetic images, says how many ground-truth shapes were found.
    Exits 1 with a one-line reason when a step fails.
    """
    make_one = f"make one with: damo-export CHECKPOINT --out {repo}"
    if not repo.is_dir():
        raise click.ClickException(f"model repository not found: {repo} ({make_one})")
    if images is not None and not images.exists():
        raise click.ClickException(f"--images not found: {images}")
    from damo_yolo.serving.repository import repository_serving, validate_repository
    try:
        validate_repository(repo)
        class_names = repository_serving(repo).class_names
    except ValueError as exc:
        raise click.ClickException(f"{repo} is no servable model repository: {str(exc).splitlines()[0]} "
                                   f"({make_one})") from None
    if images is not None:
        from damo_client.images import expand_paths
        if not expand_paths([images]):
            raise click.ClickException(f"no .jpg/.jpeg/.png images in {images}")
    try:
        prepare_out(out)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    annotations = None
    if images is None:
        annotations = make_demo_images(out, count, 416)
        images = out / "images"
        click.echo(f"{count} synthetic scenes (seed {DEMO_SEED}) in {images}")
    else:
        click.echo(classes_note(class_names))
    from damo_yolo.serving.tritonserver import LocalServer
    server = LocalServer(repo, out / "tritonserver.log")
    click.echo(f"starting tritonserver with {repo} ...")
    try:
        server.start()
    except RuntimeError as exc:
        raise click.ClickException(f"{str(exc).splitlines()[0]} (see {server.log_path})") from None
    try:
        url = server.http_url if protocol == "http" else server.grpc_url
        cmd = [str(Path(sys.executable).parent / "damo-client"), "detect", str(images), "--url", url,
               "--protocol", protocol, *(["--score-thr", str(score_thr)] if score_thr is not None else []),
               "--json", str(out / "detections.json"), "--save-dir", str(out / "annotated")]
        click.echo("$ damo-client " + " ".join(cmd[1:]))
        code = subprocess.call(cmd)
    finally:
        server.stop()
    if code != 0:
        raise click.ClickException(f"damo-client detect failed (exit code {code})")
    if annotations is not None:
        found, total = found_ground_truth(annotations, json.loads((out / "detections.json").read_text()))
        click.echo(f"found {found} of the {total} shapes in the scenes (same class, IoU >= 0.5)")
    click.echo(f"results: {out / 'detections.json'}, labelled images in {out / 'annotated'}")


def main(argv: Optional[list[str]] = None) -> int:
    """`damo-demo` with ``argv`` (default: the command line); returns the exit code (2: a usage error)."""
    return run(cli, argv, "damo-demo")


if __name__ == "__main__":
    raise SystemExit(main())
