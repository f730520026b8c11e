"""A deterministic synthetic COCO-format detection set: shapes of eight classes on photographs.

Each class has its own shape, colour family and texture, so the classes are learnable but not trivial;
objects range from ~12 px to half the image, overlap partially (at most 35% of an object is hidden, and
its box and polygon outline are those of its visible part), and sit on crops of real photographs
(``--backgrounds``: a folder of images; default ../shared/data/images when present) or on procedural textures.

    python -m damo_yolo.data.synthetic --out data/synthetic --train 800 --val 200 --size 320 --seed 0

writes ``train/*.jpg``, ``val/*.jpg`` and ``annotations/instances_{train,val}.json``. The same
arguments always give byte-identical files.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import click
import cv2
import numpy as np

from damo_yolo.cli import CONTEXT, run, several_values

DEFAULT_BACKGROUNDS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "images"
MAX_HIDDEN_FRACTION = 0.35
MIN_VISIBLE_PIXELS = 40


@dataclass(frozen=True)
class ShapeClass:
    name: str
    colour: tuple[int, int, int]  # base RGB
    texture: str  # solid | stripes | checker | dots | gradient


CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass("disc", (220, 40, 40), "solid"),
    ShapeClass("square", (40, 80, 220), "stripes"),
    ShapeClass("triangle", (40, 190, 60), "solid"),
    ShapeClass("star", (240, 210, 30), "gradient"),
    ShapeClass("ring", (200, 50, 200), "solid"),
    ShapeClass("cross", (30, 200, 210), "checker"),
    ShapeClass("hexagon", (245, 130, 20), "dots"),
    ShapeClass("ellipse", (235, 235, 235), "stripes"),
)


def _polygon(cx: float, cy: float, radius: float, sides: int, rotation: float) -> np.ndarray:
    angles = rotation + np.arange(sides) * 2 * math.pi / sides
    return np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)


def shape_mask(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A binary mask (size×size, uint8) of one object, roughly filling the square."""
    mask = np.zeros((size, size), np.uint8)
    c, r = (size - 1) / 2, size / 2 * 0.98
    rot = rng.uniform(0, 2 * math.pi)
    shift = 4  # sub-pixel precision of cv2 drawing
    pts = lambda p: np.round(p * (1 << shift)).astype(np.int32)  # noqa: E731
    if name == "disc":
        cv2.circle(mask, (int(c * 16), int(c * 16)), int(r * 16), 1, -1, cv2.LINE_8, shift)
    elif name == "square":
        cv2.fillPoly(mask, [pts(_polygon(c, c, r * 1.0, 4, rot))], 1, cv2.LINE_8, shift)
    elif name == "triangle":
        cv2.fillPoly(mask, [pts(_polygon(c, c, r, 3, rot))], 1, cv2.LINE_8, shift)
    elif name == "hexagon":
        cv2.fillPoly(mask, [pts(_polygon(c, c, r, 6, rot))], 1, cv2.LINE_8, shift)
    elif name == "star":
        outer, inner = _polygon(c, c, r, 5, rot), _polygon(c, c, r * 0.45, 5, rot + math.pi / 5)
        star = np.stack([outer, inner], 1).reshape(-1, 2)
        cv2.fillPoly(mask, [pts(star)], 1, cv2.LINE_8, shift)
    elif name == "ring":
        cv2.circle(mask, (int(c * 16), int(c * 16)), int(r * 16), 1, -1, cv2.LINE_8, shift)
        cv2.circle(mask, (int(c * 16), int(c * 16)), int(r * 0.55 * 16), 0, -1, cv2.LINE_8, shift)
    elif name == "cross":
        w = max(1, int(round(size * 0.32)))
        a = (size - w) // 2
        mask[a:a + w, :] = 1
        mask[:, a:a + w] = 1
        rot_m = cv2.getRotationMatrix2D((c, c), math.degrees(rot) % 90, 1 / math.sqrt(2) + 0.3)
        mask = cv2.warpAffine(mask, rot_m, (size, size), flags=cv2.INTER_NEAREST)
    elif name == "ellipse":
        axes = (int(r * 16), int(r * rng.uniform(0.45, 0.7) * 16))
        cv2.ellipse(mask, (int(c * 16), int(c * 16)), axes, math.degrees(rot), 0, 360, 1, -1, cv2.LINE_8, shift)
    else:
        raise ValueError(f"unknown shape {name!r}")
    return mask


def shape_texture(cls: ShapeClass, size: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB float texture (size×size×3) in the class's colour family."""
    base = np.clip(np.array(cls.colour, np.float32) + rng.normal(0, 18, 3), 0, 255)
    dark = base * rng.uniform(0.35, 0.6)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = max(3.0, size / rng.uniform(3, 6))
    if cls.texture == "stripes":
        angle = rng.uniform(0, math.pi)
        t = ((xx * math.cos(angle) + yy * math.sin(angle)) / period) % 1.0 < 0.5
    elif cls.texture == "checker":
        t = ((xx // period + yy // period) % 2) == 0
    elif cls.texture == "dots":
        t = (((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2) > (period / 3.2) ** 2
    elif cls.texture == "gradient":
        g = (xx + yy) / max(1.0, 2 * size - 2)
        return (base[None, None] * (1 - 0.5 * g[..., None]) + dark[None, None] * 0.5 * g[..., None])
    else:
        t = np.ones((size, size), bool)
    tex = np.where(t[..., None], base[None, None], dark[None, None])
    return tex + rng.normal(0, 6, (size, size, 3))


def procedural_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.uniform(40, 215, (max(2, h // 40), max(2, w // 40), 3)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(rng.normal(0, 25, (h // 4 + 1, w // 4 + 1, 3)).astype(np.float32), (w, h))
    return np.clip(field + fine, 0, 255).astype(np.uint8)


def photo_background(photos: Sequence[np.ndarray], h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.25, 0.9)
    ch, cw = max(8, int(ph * scale)), max(8, int(pw * scale))
    y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = cv2.resize(photo[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    gain = rng.uniform(0.7, 1.2)
    return np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def load_backgrounds(folder: Optional[Path]) -> list[np.ndarray]:
    """RGB photographs from ``folder`` (sorted, so the set is deterministic); [] when there are none."""
    if folder is None or not Path(folder).is_dir():
        return []
    photos = []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"):
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is not None:
                photos.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return photos


def outline(visible: np.ndarray, x1: int, y1: int, upsample: int = 4) -> list[list[float]]:
    """The COCO polygon (one flat point list per part) of a visible-pixel mask cropped at (x1, y1): outer
    contours traced at 1/``upsample`` px, so the outline's extent is the box's to within 1/(2·upsample) px."""
    big = cv2.resize(visible.astype(np.uint8), None, fx=upsample, fy=upsample, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    parts = []
    for contour in contours:
        if len(contour) >= 3:
            points = (contour.reshape(-1, 2) + 0.5) / upsample + (x1, y1)
            parts.append([round(float(v), 2) for v in points.reshape(-1)])
    return parts


def render_image(rng: np.random.Generator, h: int, w: int, photos: Sequence[np.ndarray],
                 max_objects: int = 8) -> tuple[np.ndarray, list[dict]]:
    """One RGB image and its objects: dicts with ``label``, ``bbox`` (x, y, w, h), ``area`` and
    ``segmentation`` (the visible part's outline)."""
    use_photo = photos and rng.random() < 0.8
    image = (photo_background(photos, h, w, rng) if use_photo
             else procedural_background(h, w, rng)).astype(np.float32)
    owner = np.full((h, w), -1, np.int32)  # which object each pixel shows
    placed: list[tuple[int, int]] = []  # (label, full mask pixel count)
    min_size, max_size = 12, max(13, min(h, w) // 2)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(CLASSES)))
        size = int(round(math.exp(rng.uniform(math.log(min_size), math.log(max_size)))))
        mask = shape_mask(CLASSES[label].name, size, rng).astype(bool)
        for _attempt in range(10):
            x0, y0 = (int(rng.integers(-size // 4, w - size + size // 4 + 1)),
                      int(rng.integers(-size // 4, h - size + size // 4 + 1)))
            ys, xs = np.nonzero(mask)
            ys, xs = ys + y0, xs + x0
            inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
            ys, xs = ys[inside], xs[inside]
            if ys.size < MIN_VISIBLE_PIXELS:
                continue
            covered = owner[ys, xs]
            # the new object may hide at most MAX_HIDDEN_FRACTION of any object below it
            hidden_ok = True
            for idx in np.unique(covered[covered >= 0]):
                visible_now = np.count_nonzero(owner == idx)
                lost = np.count_nonzero(covered == idx)
                if visible_now - lost < (1 - MAX_HIDDEN_FRACTION) * placed[idx][1]:
                    hidden_ok = False
                    break
            if not hidden_ok:
                continue
            tex = shape_texture(CLASSES[label], size, rng)
            image[ys, xs] = tex[ys - y0, xs - x0]
            owner[ys, xs] = len(placed)
            placed.append((label, int(ys.size)))
            break
    image = cv2.GaussianBlur(image, (3, 3), rng.uniform(0.1, 0.8))
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    objects = []
    for idx, (label, _) in enumerate(placed):
        ys, xs = np.nonzero(owner == idx)
        if ys.size < MIN_VISIBLE_PIXELS:
            continue
        x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        objects.append({"label": label, "bbox": [x1, y1, x2 - x1, y2 - y1], "area": int(ys.size),
                        "segmentation": outline(owner[y1:y2, x1:x2] == idx, x1, y1)})
    return image, objects


def generate_split(out_dir: Path, split: str, count: int, size: tuple[int, int], seed: int,
                   photos: Sequence[np.ndarray], progress: Optional[Callable[[int], None]] = None) -> Path:
    """Write ``count`` images of one split and their instances json; returns the json path."""
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    split_key = {"train": 0, "val": 1}.get(split, sum(map(ord, split)))
    images, annotations = [], []
    h, w = size
    for i in range(count):
        rng = np.random.default_rng([seed, split_key, i])
        image, objects = render_image(rng, h, w, photos)
        file_name = f"{split}_{i:06d}.jpg"
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {file_name}")
        (image_dir / file_name).write_bytes(buf.tobytes())
        image_id = i + 1
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": obj["label"] + 1,
                                "bbox": obj["bbox"], "area": obj["area"], "segmentation": obj["segmentation"],
                                "iscrowd": 0})
        if progress:
            progress(i + 1)
    coco = {
        "info": {"description": f"DAMO-YOLO synthetic shapes, split {split}, seed {seed}"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": c.name, "supercategory": "shape"} for i, c in enumerate(CLASSES)],
    }
    ann_path = out_dir / "annotations" / f"instances_{split}.json"
    ann_path.write_text(json.dumps(coco))
    return ann_path


def _size(ctx: click.Context, param: click.Parameter, values: tuple[int, ...]) -> tuple[int, int]:
    if len(values) not in (1, 2) or min(values) < 64:
        raise click.BadParameter(f"{' '.join(map(str, values))}: one or two values (H W) of at least 64 px")
    return values[0], values[-1]


@click.command(cls=several_values("--size"), context_settings=CONTEXT)
@click.version_option(package_name="damo-yolo", prog_name="damo-synthetic")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("data/synthetic"),
              show_default=True, help="Output folder.")
@click.option("--train", type=click.IntRange(min=0), default=800, show_default=True, help="Training images.")
@click.option("--val", type=click.IntRange(min=0), default=200, show_default=True, help="Validation images.")
@click.option("--size", type=int, multiple=True, default=(320,), show_default=True, metavar="PX [PX]",
              callback=_size, help="Image size: one value (square) or H W.")
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed gives byte-identical files.")
@click.option("--backgrounds", type=click.Path(path_type=Path), default=DEFAULT_BACKGROUNDS, show_default=True,
              help="Folder of photographs for backgrounds (procedural textures without one).")
def cli(out: Path, train: int, val: int, size: tuple[int, int], seed: int, backgrounds: Path) -> None:
    """Write the synthetic shapes data set: eight classes of shapes on photographs, COCO format.

    \b
        damo-synthetic --out data/synthetic --train 800 --val 200 --size 320 --seed 0

    \b
    Writes train/*.jpg, val/*.jpg and annotations/instances_{train,val}.json; the same arguments always
    give byte-identical files.
    """
    photos = load_backgrounds(backgrounds)
    click.echo(f"backgrounds: {len(photos)} photographs from {backgrounds}" if photos
               else "backgrounds: procedural textures (no photographs found)")
    for split, count in (("train", train), ("val", val)):
        path = generate_split(out, split, count, size, seed, photos)
        click.echo(f"{split}: {count} images → {path}")


def main(argv: Optional[list[str]] = None) -> int:
    """`damo-synthetic` with ``argv`` (default: the command line); returns the exit code (2: a usage error)."""
    return run(cli, argv, "damo-synthetic")


if __name__ == "__main__":
    raise SystemExit(main())
