"""`damo-browse-dataset`: training samples as the config's pipeline makes them, with their boxes drawn.

    damo-browse-dataset train/configs/damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py --out browse/
    damo-browse-dataset CONFIG --epoch 20 --count 16            # SADA's probability ramps with the epoch
    damo-browse-dataset CONFIG --phase last                     # the last epochs' pipeline (PipelineSwitchHook)

Each sample is written as ``<index>_<img_id>.jpg`` at the model's input size, exactly what the model is fed
at that epoch (the same seed gives the same pictures as training).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from damo_yolo.cli import CONTEXT, key_values, parse_cfg_options, run, several_values


@click.command(cls=several_values("--cfg-options"), context_settings=CONTEXT)
@click.version_option(package_name="damo-yolo", prog_name="damo-browse-dataset")
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("browse"), show_default=True,
              help="Folder for the drawn samples.")
@click.option("--count", type=click.IntRange(min=1), default=12, show_default=True, help="Samples to write.")
@click.option("--epoch", type=click.IntRange(min=0), default=0, show_default=True,
              help="The epoch whose samples to draw (0-based).")
@click.option("--phase", type=click.Choice(["main", "last"]), default="main", show_default=True,
              help="main: train_pipeline; last: the pipeline of the last, no-augmentation epochs.")
@click.option("--cfg-options", "settings", multiple=True, metavar="KEY=VALUE ...", callback=key_values,
              help="Override config settings, e.g. --cfg-options data_root=data/synthetic/ input_size=(256,256).")
def cli(config: Path, out: Path, count: int, epoch: int, phase: str, settings: tuple[str, ...]) -> None:
    """Training samples of CONFIG as its pipeline makes them, with their boxes drawn.

    \b
        damo-browse-dataset train/configs/damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py --out browse/
        damo-browse-dataset CONFIG --epoch 20 --count 16      # SADA's probability ramps with the epoch
        damo-browse-dataset CONFIG --phase last               # the last epochs' pipeline (PipelineSwitchHook)

    \b
    Each sample is written as <index>_<img_id>.jpg at the model's input size, exactly what the model is
    fed at that epoch (the same seed gives the same pictures as training).
    """
    if not config.is_file():  # before the seconds mmengine and torch take to import
        raise click.ClickException(f"config not found: {config}" + (" (it is a directory)" if config.is_dir() else ""))
    from damo_yolo.data.coco import DataError
    from damo_yolo.training.config import ConfigError, load_config
    try:
        cfg = load_config(config, parse_cfg_options(settings))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
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
        raise click.ClickException(str(exc)) from None
    pipeline = cfg.train_dataloader.dataset.pipeline
    if phase == "last":
        switch = next((h for h in cfg.custom_hooks if h["type"] == "PipelineSwitchHook"), None)
        if switch is None:
            raise click.ClickException("the config has no PipelineSwitchHook (no last-phase pipeline)")
        pipeline = switch["switch_pipeline"]
        dataset.pipeline = Compose(pipeline)
    dataset.set_epoch(epoch)
    names = dataset.metainfo["classes"]
    out.mkdir(parents=True, exist_ok=True)
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        rgb = sample["inputs"].numpy().transpose(1, 2, 0)
        targets = sample["data_samples"]
        boxes = [Detection(tuple(float(v) for v in box), 1.0, int(label), names[int(label)])
                 for box, label in zip(targets["boxes"].tolist(), targets["labels"].tolist())]
        drawn = annotate(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), boxes, scores=False)
        cv2.imwrite(str(out / f"{index:04d}_{targets['img_id']}.jpg"), drawn)
    click.echo(f"{min(count, len(dataset))} samples of epoch {epoch} ({describe(pipeline)}) → {out}")


def main(argv: Optional[list[str]] = None) -> int:
    """`damo-browse-dataset` with ``argv`` (default: the command line); returns the exit code (2: a usage error)."""
    return run(cli, argv, "damo-browse-dataset")


if __name__ == "__main__":
    raise SystemExit(main())
