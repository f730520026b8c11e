"""`damo-zoo`: the model zoo at a glance, checked by building every variant.

Prints each variant's input size, parameter counts (training form and RepConv-fused, as the official zoo
counts them) next to the published figures, and, with ``--image``, runs one variant on a photograph.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import click

from damo_yolo.cli import CONTEXT, run

ZOO_FILE = Path(__file__).resolve().parents[1] / "models" / "zoo.py"


def _zoo() -> dict[str, Any]:
    """The names of damo_yolo/models/zoo.py. The zoo is plain data: read on its own, without the torch that
    importing the damo_yolo.models package brings, so a variant name is checked before any heavy import."""
    module = sys.modules.get("damo_yolo.models.zoo")
    if module is not None:
        return vars(module)
    import runpy
    return runpy.run_path(str(ZOO_FILE))


def known_variant(name: str) -> str:
    """The zoo's name of variant ``name`` (any spelling ``get_model_cfg`` accepts: "ns", "damoyolo_ns", ...);
    ValueError naming the known variants otherwise."""
    return _zoo()["get_model_cfg"](name).name


def variant_option(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    """A click callback: a ``--variant`` checked against the zoo while the arguments are parsed."""
    if value is None:
        return None
    try:
        return known_variant(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def count_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


@click.command(context_settings=CONTEXT)
@click.version_option(package_name="damo-yolo", prog_name="damo-zoo")
@click.option("--image", type=click.Path(dir_okay=False, path_type=Path),
              help="Also run --variant on this photograph (random weights: a timing and shape check only).")
@click.option("--variant", default="Ns", show_default=True, callback=variant_option,
              help="The variant --image runs.")
def cli(image: Optional[Path], variant: str) -> None:
    """The DAMO-YOLO model zoo at a glance, checked by building every variant.

    \b
    Prints each variant's input size and parameter counts (training form and RepConv-fused, as the
    official zoo counts them) next to the published figures:
        damo-zoo
        damo-zoo --image bus.jpg --variant S     # and one untrained forward pass, timed on the CPU
    """
    if image is not None and not image.is_file():
        raise click.ClickException(f"image not found: {image}")
    import time

    import cv2
    import torch

    from damo_yolo.data.preprocess import preprocess
    from damo_yolo.models import build_model, list_models
    from damo_yolo.models.zoo import ZOO_RESULTS

    bgr = None
    if image is not None:  # before the table: a file that is no image is refused at once
        bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if bgr is None:
            raise click.ClickException(f"cannot read image {image}: not a picture OpenCV decodes")

    click.echo(f"{'variant':8} {'input':>8} {'params (train)':>15} {'params (fused)':>15} {'zoo':>7} {'zoo mAP':>8}")
    for name in list_models():
        model = build_model(name)
        unfused = count_params(model)
        fused = count_params(model.switch_to_deploy())
        h, w = model.cfg.input_size
        reported = ZOO_RESULTS.get(name)
        zoo, zoo_map = (f"{reported.params_m:.2f}M", f"{reported.coco_map:.1f}") if reported else ("-", "-")
        click.echo(f"{name:8} {h:>4}x{w:<3} {unfused:>15,} {fused:>15,} {zoo:>7} {zoo_map:>8}")

    if bgr is not None:
        model = build_model(variant).switch_to_deploy().eval()
        chw, info = preprocess(bgr, model.cfg.input_size)
        x = torch.from_numpy(chw)[None]
        with torch.inference_mode():
            model(x)
            start = time.perf_counter()
            scores, boxes = model(x)
            elapsed = (time.perf_counter() - start) * 1e3
        click.echo(f"\n{variant} on {image} ({info.orig_w}x{info.orig_h} → {x.shape[3]}x{x.shape[2]}): "
                   f"scores {tuple(scores.shape)}, boxes {tuple(boxes.shape)}, {elapsed:.1f} ms on CPU "
                   f"(untrained weights: no meaningful detections until a checkpoint is loaded)")


def main(argv: Optional[list[str]] = None) -> int:
    """`damo-zoo` with ``argv`` (default: the command line); returns the exit code (2: a usage error)."""
    return run(cli, argv, "damo-zoo")


if __name__ == "__main__":
    raise SystemExit(main())
