"""Synthetic tracking clips that know their truth: the synthetic set's shapes moving over a still background —
crossing and hiding one another, entering and leaving the frame — written as an H.264 video (PyAV) with its
ground-truth tracks in MOTChallenge's layout, for tracking metrics (py-motmetrics) and the video tests.

    damo-synthetic-video --out data/tracking --clips 4 --frames 150 --size 320 320 --fps 25 --seed 0

writes, per clip ``NAME``: ``NAME.mp4`` and ``NAME/gt/gt.txt`` + ``NAME/seqinfo.ini`` (MOTChallenge: one line per
visible object and frame, ``frame, id, x, y, w, h, 1, class, visibility``; frames from 1, class from 1 in
``synthetic.CLASSES`` order). A box is the extent of the object's visible pixels, as the image set's boxes are;
an object counts as visible in a frame while at least ``MIN_VISIBILITY`` of it and ``MIN_VISIBLE_PIXELS`` show.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import click
import numpy as np

from damo_yolo.cli import CONTEXT, run
from damo_yolo.data.synthetic import (
    CLASSES,
    DEFAULT_BACKGROUNDS,
    MIN_VISIBLE_PIXELS,
    load_backgrounds,
    photo_background,
    procedural_background,
    shape_mask,
    shape_texture,
)

MIN_VISIBILITY = 0.3  # the fraction of an object that must show for it to be in the ground truth
CRF = 18  # H.264 quality: near-lossless at these sizes, so the detector sees what the generator drew


@dataclass
class Mover:
    """One object's path: its mask and texture, where it is at its first frame, its velocity (px/frame, with a
    little acceleration), and its depth (larger: nearer, drawn over the others)."""
    track_id: int
    label: int
    mask: np.ndarray  # bool [size, size]
    texture: np.ndarray  # float RGB [size, size, 3]
    start: int  # first frame it exists in
    x: float
    y: float
    vx: float
    vy: float
    ax: float
    ay: float
    depth: float

    def position(self, t: int) -> tuple[int, int]:
        dt = t - self.start
        return (int(round(self.x + self.vx * dt + 0.5 * self.ax * dt * dt)),
                int(round(self.y + self.vy * dt + 0.5 * self.ay * dt * dt)))


def _entering(rng: np.random.Generator, h: int, w: int, size: int, speed: float) -> tuple[float, float, float, float]:
    """Start just outside one edge, heading into the frame at ``speed`` px/frame."""
    edge = int(rng.integers(4))
    along = rng.uniform(0.15, 0.85)
    if edge == 0:  # left
        x, y, angle = -size + 1.0, along * (h - size), rng.uniform(-0.6, 0.6)
    elif edge == 1:  # right
        x, y, angle = w - 1.0, along * (h - size), math.pi + rng.uniform(-0.6, 0.6)
    elif edge == 2:  # top
        x, y, angle = along * (w - size), -size + 1.0, math.pi / 2 + rng.uniform(-0.6, 0.6)
    else:  # bottom
        x, y, angle = along * (w - size), h - 1.0, -math.pi / 2 + rng.uniform(-0.6, 0.6)
    return x, y, speed * math.cos(angle), speed * math.sin(angle)


def make_movers(rng: np.random.Generator, h: int, w: int, frames: int, count: int) -> list[Mover]:
    """``count`` objects: half in the frame from the start, the rest entering from an edge later; all moving
    1–4 px a frame (some leave the frame before the end)."""
    movers = []
    min_size, max_size = 24, max(25, min(h, w) // 3)
    for track_id in range(1, count + 1):
        label = int(rng.integers(len(CLASSES)))
        size = int(round(math.exp(rng.uniform(math.log(min_size), math.log(max_size)))))
        speed = rng.uniform(1.0, 4.0)
        if track_id <= (count + 1) // 2:
            start = 0
            x, y = rng.uniform(0, w - size), rng.uniform(0, h - size)
            angle = rng.uniform(0, 2 * math.pi)
            vx, vy = speed * math.cos(angle), speed * math.sin(angle)
        else:
            start = int(rng.integers(1, max(2, frames * 2 // 3)))
            x, y, vx, vy = _entering(rng, h, w, size, speed)
        movers.append(Mover(track_id, label, shape_mask(CLASSES[label].name, size, rng).astype(bool),
                            shape_texture(CLASSES[label], size, rng), start, x, y, vx, vy,
                            rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02), rng.uniform(0, 1)))
    return movers


def render_frame(background: np.ndarray, movers: Sequence[Mover], t: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, list[dict]]:
    """Frame ``t`` (RGB uint8) and its visible objects: ``track_id``, ``label``, ``bbox`` (x, y, w, h of the
    visible pixels), ``visibility`` (visible / whole pixels)."""
    h, w = background.shape[:2]
    image = background.astype(np.float32)
    owner = np.full((h, w), -1, np.int32)
    whole: dict[int, int] = {}
    for index, mover in sorted(enumerate(movers), key=lambda item: item[1].depth):  # far first, near over them
        if t < mover.start:
            continue
        x0, y0 = mover.position(t)
        ys, xs = np.nonzero(mover.mask)
        whole[index] = ys.size
        ys, xs = ys + y0, xs + x0
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        image[ys[inside], xs[inside]] = mover.texture[ys[inside] - y0, xs[inside] - x0]
        owner[ys[inside], xs[inside]] = index
    image = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    objects = []
    for index, total in whole.items():
        ys, xs = np.nonzero(owner == index)
        if ys.size < MIN_VISIBLE_PIXELS or ys.size < MIN_VISIBILITY * total:
            continue
        x1, y1 = int(xs.min()), int(ys.min())
        objects.append({"track_id": movers[index].track_id, "label": movers[index].label,
                        "bbox": [x1, y1, int(xs.max()) + 1 - x1, int(ys.max()) + 1 - y1],
                        "visibility": round(ys.size / total, 3)})
    return image, objects


def write_video(path: Path, frames: Sequence[np.ndarray], fps: int, crf: int = CRF) -> Path:
    """RGB frames → an H.264 MP4 (yuv420p, so any player reads it) with PyAV."""
    import av
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def mot_lines(per_frame: Sequence[list[dict]]) -> list[str]:
    """MOTChallenge ground-truth lines: frame (from 1), id, x, y, w, h, 1 (considered), class (from 1), visibility."""
    return [f"{t + 1},{o['track_id']},{o['bbox'][0]},{o['bbox'][1]},{o['bbox'][2]},{o['bbox'][3]},1,"
            f"{o['label'] + 1},{o['visibility']}" for t, objects in enumerate(per_frame) for o in objects]


def generate_clip(out_dir: Path, name: str, frames: int, size: tuple[int, int], fps: int, seed: int,
                  photos: Sequence[np.ndarray], objects: int = 8) -> Path:
    """Write one clip (``name``.mp4) and its ground truth (``name``/gt/gt.txt, ``name``/seqinfo.ini); returns the
    video's path."""
    h, w = size
    rng = np.random.default_rng(seed)
    background = (photo_background(photos, h, w, rng) if photos else procedural_background(h, w, rng))
    movers = make_movers(rng, h, w, frames, objects)
    rendered = [render_frame(background, movers, t, rng) for t in range(frames)]
    video = write_video(Path(out_dir) / f"{name}.mp4", [image for image, _ in rendered], fps)
    gt = Path(out_dir) / name / "gt" / "gt.txt"
    gt.parent.mkdir(parents=True, exist_ok=True)
    gt.write_text("\n".join(mot_lines([objs for _, objs in rendered])) + "\n")
    (Path(out_dir) / name / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate={fps}\nseqLength={frames}\nimWidth={w}\nimHeight={h}\n"
        f"imExt=.jpg\n")
    return video


def _size(ctx: click.Context, param: click.Parameter, values: tuple[int, ...]) -> tuple[int, int]:
    if any(v < 64 or v % 2 for v in values):
        raise click.BadParameter("H and W must be even and at least 64 (H.264's 4:2:0 sampling)")
    return values[0], values[1]


@click.command(context_settings=CONTEXT)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the clips.")
@click.option("--clips", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--frames", type=click.IntRange(min=2), default=150, show_default=True, help="Frames per clip.")
@click.option("--size", type=int, nargs=2, default=(320, 320), show_default=True, callback=_size, metavar="H W")
@click.option("--fps", type=click.IntRange(min=1, max=120), default=25, show_default=True)
@click.option("--objects", type=click.IntRange(min=1), default=8, show_default=True, help="Objects per clip.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--backgrounds", type=click.Path(path_type=Path), default=DEFAULT_BACKGROUNDS,
              help="Photographs to crop still backgrounds from [default: ../shared/data/images; procedural "
                   "backgrounds when absent].")
def cli(out: Path, clips: int, frames: int, size: tuple[int, int], fps: int, objects: int, seed: int,
        backgrounds: Path) -> None:
    """Synthetic tracking clips with their ground truth (MOTChallenge gt.txt): the synthetic set's shapes moving,
    crossing, hiding one another, entering and leaving."""
    photos = load_backgrounds(backgrounds)
    for i in range(clips):
        video = generate_clip(out, f"clip{i:02d}", frames, size, fps, seed * 1000 + i, photos, objects)
        click.echo(f"{video} ({frames} frames at {fps} fps) and {out / f'clip{i:02d}' / 'gt' / 'gt.txt'}")


def main(argv: Optional[list[str]] = None) -> int:
    return run(cli, argv, "damo-synthetic-video")
