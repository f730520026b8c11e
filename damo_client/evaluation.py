"""Served detections scored against a COCO annotations file: ids that match the file (images by file name,
categories by class name) and the COCO metrics of pycocotools.

    from damo_client.evaluation import evaluate
    metrics = evaluate("instances_val.json", "val/", url="localhost:8001", protocol="grpc")
    print(metrics.report())  # pycocotools' 12 figures, then AP per class

The images of the annotations file are sent with ``in_flight`` requests outstanding; every one must be answered
(an evaluation without some images would score the rest as if complete). Thresholds: the served defaults, or with
``thresholds="evaluation"`` the checkpoint's evaluation thresholds the repository records (a low score threshold:
the whole precision-recall curve, as training's evaluation sees it). The served model answers at most its K boxes
per image (``max_detections``, 100 by default: COCO's own maxDets).
"""
from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from damo_client.errors import DamoClientError, ImageError, InferenceError

if TYPE_CHECKING:
    from damo_client.client import AsyncDamoClient
    from damo_client.results import Detection

THRESHOLDS = ("served", "evaluation")
IN_FLIGHT = 8
# pycocotools' 12 summary figures, in its order; -1 (no object of that size in the set) is reported as n/a
COCO_STATS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


class AnnotationsError(DamoClientError, ValueError):
    """An annotations file that cannot be read or does not fit the served model."""


@dataclass(frozen=True)
class CocoIds:
    """The ids of a COCO annotations file for served answers: an image's id by its file name (as the file
    writes it, or its base name where that is unique), a served class's category id by its name."""

    path: Path
    images: dict[str, int]
    categories: list[int]  # category id of each served class index
    unmatched: tuple[str, ...] = ()  # served class names the file does not name (then: training's convention)

    @classmethod
    def load(cls, annotations: Union[str, os.PathLike], class_names: list[str]) -> "CocoIds":
        return cls.of(read_annotations(Path(annotations)), Path(annotations), class_names)

    @classmethod
    def of(cls, coco: dict, path: Path, class_names: list[str]) -> "CocoIds":
        """The ids of an annotations file already read (``coco``, from ``path``)."""
        images: dict[str, int] = {}
        bases: dict[str, list[int]] = {}
        for im in coco["images"]:
            images[str(im["file_name"])] = int(im["id"])
            bases.setdefault(Path(im["file_name"]).name, []).append(int(im["id"]))
        for name, ids in bases.items():
            if len(ids) == 1:
                images.setdefault(name, ids[0])
        named = {c["name"] for c in coco["categories"]}
        return cls(path, images, category_ids(class_names, coco["categories"], path),
                   tuple(n for n in class_names if n not in named))

    def mapping_note(self) -> str:
        """A line for the user when the classes were not all found by name ('' when they were)."""
        if not self.unmatched:
            return ""
        return (f"note: {self.path} does not name the served classes {', '.join(self.unmatched[:5])}"
                f"{' …' if len(self.unmatched) > 5 else ''}: every class is mapped by training's convention (the "
                f"i-th class to the i-th category id, ascending)")

    def image_id(self, image: Union[str, os.PathLike]) -> int:
        """The id of ``image`` (a path whose name, or whose path relative to the annotations' image folder, the
        file lists); ImageError naming the image when it lists none."""
        image = Path(image)
        for key in (image.as_posix(), *(Path(*image.parts[i:]).as_posix() for i in range(1, len(image.parts)))):
            if key in self.images:
                return self.images[key]
        raise ImageError(f"{image}: not an image of {self.path} (no file_name matches)")

    def rows(self, image_id: int, detections: "list[Detection]") -> list[dict]:
        """COCO results rows of one image's detections, with the file's category ids."""
        return [d.to_coco(image_id, self.categories[d.class_id]) for d in detections]


def read_annotations(path: Path) -> dict:
    try:
        coco = json.loads(Path(path).read_text())
    except OSError as exc:
        raise AnnotationsError(f"{path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise AnnotationsError(f"{path}: not JSON ({exc})") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) or \
            not isinstance(coco.get("categories"), list):
        raise AnnotationsError(f"{path}: not a COCO annotations file (no 'images' and 'categories' lists)")
    return coco


def category_ids(class_names: list[str], categories: list[dict], source: Union[str, Path] = "the annotations") \
        -> list[int]:
    """The category id of each served class: by name when the file names every class; else, when the counts
    agree, by training's convention (the i-th class is the i-th category id in ascending order)."""
    by_name = {c["name"]: int(c["id"]) for c in categories}
    if class_names and all(n in by_name for n in class_names):
        return [by_name[n] for n in class_names]
    ids = sorted(int(c["id"]) for c in categories)
    if len(class_names) != len(ids):
        missing = [n for n in class_names if n not in by_name][:5]
        raise AnnotationsError(f"{source} has {len(ids)} categories and does not name the served model's "
                               f"{len(class_names)} classes (not in it: {', '.join(missing)})")
    return ids


@dataclass
class Metrics:
    """What an evaluation found: pycocotools' 12 figures (None where it says -1: no object of that size),
    AP per class, and the settings it was measured with."""

    stats: dict[str, Optional[float]]
    per_class: dict[str, float]
    images: int
    detections: int
    thresholds: dict[str, Any] = field(default_factory=dict)
    results: list = field(default_factory=list)  # the COCO results rows scored

    @property
    def mAP(self) -> float:
        return self.stats["AP"] or 0.0

    def report(self) -> str:
        settings = ", ".join(f"{k} {v}" for k, v in self.thresholds.items())
        lines = [f"{self.images} images, {self.detections} detections ({settings})"]
        lines += [f"  {name:<10} {format_figure(value)}" for name, value in self.stats.items()]
        if self.per_class:
            width = max(len("class"), *(len(n) for n in self.per_class))
            lines += ["", f"  {'class':<{width}}  AP"]
            lines += [f"  {name:<{width}}  {ap:.4f}" for name, ap in self.per_class.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"stats": self.stats, "per_class": self.per_class, "images": self.images,
                "detections": self.detections, "thresholds": self.thresholds}


def format_figure(value: Optional[float]) -> str:
    """A COCO figure for a table: four decimals, or n/a where pycocotools has none (-1)."""
    return "n/a" if value is None else f"{value:.4f}"


def score(annotations: Any, results: list[dict], image_ids: Optional[list[int]] = None) \
        -> tuple[dict[str, Optional[float]], dict[str, float], str]:
    """(the 12 figures, AP per class, pycocotools' printed summary) of COCO results rows against
    ``annotations`` (a file, or a loaded pycocotools COCO) over ``image_ids`` (default: all its images)."""
    import contextlib
    import io

    import numpy as np
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise DamoClientError("scoring needs pycocotools: pip install 'damo-yolo[evaluate]'") from None
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        gt = annotations if isinstance(annotations, COCO) else COCO(str(annotations))
        if not results:  # nothing found: 0 wherever the set has objects, n/a where it has none of that size
            from pycocotools.cocoeval import Params
            ids = gt.getImgIds() if image_ids is None else list(image_ids)
            areas = [a["area"] for a in gt.loadAnns(gt.getAnnIds(imgIds=ids, catIds=gt.getCatIds()))
                     if not a.get("iscrowd", 0)]
            present = [any(lo <= a <= hi for a in areas) for lo, hi in Params(iouType="bbox").areaRng]
            by_range = (0, 0, 0, 1, 2, 3) * 2  # all, all, all, small, medium, large; the same for AR
            stats = {name: (0.0 if present[by_range[i]] else None) for i, name in enumerate(COCO_STATS)}
            return stats, {c["name"]: 0.0 for c in gt.cats.values()}, "no detections"
        summary.seek(0), summary.truncate()
        evaluator = COCOeval(gt, gt.loadRes([dict(r) for r in results]), "bbox")
        evaluator.params.imgIds = list(image_ids) if image_ids is not None else sorted(gt.getImgIds())
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: (None if value < 0 else float(value)) for name, value in zip(COCO_STATS, evaluator.stats)}
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]: AP@[.5:.95] of each category, all areas, 100 dets
    per_class = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]
        per_class[gt.cats[cat_id]["name"]] = float(np.mean(p[p > -1])) if (p > -1).any() else 0.0
    return stats, per_class, summary.getvalue()


def request_thresholds(client: "AsyncDamoClient", thresholds: str, score_threshold: Optional[float],
                       iou_threshold: Optional[float]) -> tuple[Optional[float], Optional[float], dict]:
    """(score, IoU threshold to send, their description) for a connected client: given ones first, then the
    served defaults or the repository's recorded evaluation thresholds."""
    if thresholds not in THRESHOLDS:
        raise ValueError(f"unknown thresholds {thresholds!r}: choose {' or '.join(THRESHOLDS)}")
    score_thr, iou_thr = score_threshold, iou_threshold
    if thresholds == "evaluation":
        recorded = client.export_info.get("evaluation")
        if not recorded:
            raise DamoClientError(f"model {client.model!r} does not record its evaluation thresholds (exported by "
                                  f"an earlier damo-export): give --score-thr and --iou-thr")
        score_thr = recorded["score_threshold"] if score_thr is None else score_thr
        iou_thr = recorded["iou_threshold"] if iou_thr is None else iou_thr
    serving = client.serving
    shown = {"thresholds": thresholds,
             "score >": score_thr if score_thr is not None else getattr(serving, "score_threshold", None),
             "NMS IoU": iou_thr if iou_thr is not None else getattr(serving, "iou_threshold", None),
             "at most": f"{getattr(serving, 'max_detections', '?')} per image"}
    return score_thr, iou_thr, shown


async def evaluate_async(client: "AsyncDamoClient", annotations: Union[str, os.PathLike],
                         images_dir: Union[str, os.PathLike], thresholds: str = "served",
                         score_threshold: Optional[float] = None, iou_threshold: Optional[float] = None,
                         in_flight: int = IN_FLIGHT, on_image: Callable[[], None] = lambda: None,
                         on_note: Callable[[str], None] = lambda text: None,
                         on_start: Callable[[int], None] = lambda images: None) -> Metrics:
    """Every image of ``annotations`` (found under ``images_dir`` by its file_name) through ``client``, scored
    with pycocotools. ``on_start`` is told how many images the file lists, ``on_image`` each image answered,
    ``on_note`` what the user should know (classes
    the file does not name). Raises AnnotationsError for a file that does not fit, ImageError or InferenceError
    naming an image that cannot be read or is refused, and the client's errors when the server cannot answer."""
    annotations, images_dir = Path(annotations), Path(images_dir)
    coco = read_annotations(annotations)
    if not images_dir.is_dir():
        raise ImageError(f"{images_dir}: no such folder")
    await client.connect()
    ids = CocoIds.of(coco, annotations, client.class_names)
    if ids.unmatched:
        on_note(ids.mapping_note())
    score_thr, iou_thr, shown = request_thresholds(client, thresholds, score_threshold, iou_threshold)
    images = list(coco["images"])
    on_start(len(images))
    rows: list[dict] = []
    queue = iter(images)

    async def worker() -> None:
        for im in queue:  # the workers share one iterator: each image is sent once
            path = images_dir / im["file_name"]
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                raise ImageError(f"{path}: cannot read it ({exc.strerror}); {annotations} lists it") from None
            try:
                detections = await client.detect(data, score_thr, iou_thr)
            except (ImageError, InferenceError) as exc:  # the image named: a score without it is no score
                raise type(exc)(f"{path}: {exc}") from None
            rows.extend(ids.rows(int(im["id"]), detections))
            on_image()

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, min(in_flight, len(images))))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    stats, per_class, _ = await asyncio.to_thread(score, annotations, rows, [int(im["id"]) for im in images])
    return Metrics(stats, per_class, len(images), len(rows), shown, rows)


def evaluate(annotations: Union[str, os.PathLike], images_dir: Union[str, os.PathLike], url: Optional[str] = None,
             protocol: str = "grpc", model: str = "damo_yolo", **options: Any) -> Metrics:
    """``evaluate_async`` with its own AsyncDamoClient (``url``, ``protocol``, ``model``)."""
    from damo_client.client import AsyncDamoClient

    async def run() -> Metrics:
        async with AsyncDamoClient(url, protocol, model) as client:
            return await evaluate_async(client, annotations, images_dir, **options)

    return asyncio.run(run())
