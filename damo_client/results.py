"""Detections as the client returns them, and their COCO-results / table forms."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, SupportsFloat


def coco_row(image_id: int, category_id: int, box: Iterable[SupportsFloat], score: float) -> dict:
    """One COCO results entry from an (x1, y1, x2, y2) box: ``bbox`` is (x, y, width, height). The one
    rounding policy of every results file the project writes: boxes to 0.01 px, scores to 5 decimals
    (far below what changes a COCO metric, and half the file of full floats)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return {"image_id": int(image_id), "category_id": int(category_id),
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "score": round(float(score), 5)}


@dataclass(frozen=True)
class Detection:
    """One detected object; ``box`` is (x1, y1, x2, y2) in original image pixels."""

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    class_name: str

    def to_coco(self, image_id: int, category_id: int | None = None) -> dict:
        """The COCO results entry: ``bbox`` is (x, y, width, height); ``category_id`` defaults to class_id."""
        return coco_row(image_id, self.class_id if category_id is None else category_id, self.box, self.score)

    def to_dict(self) -> dict:
        return asdict(self)


def format_table(detections: list[Detection]) -> str:
    """A readable, aligned table of detections (best first)."""
    if not detections:
        return "  (no detections)"
    width = max(len("class"), *(len(d.class_name) for d in detections))
    lines = [f"  {'class':<{width}}  score   x1      y1      x2      y2"]
    for d in sorted(detections, key=lambda d: -d.score):
        x1, y1, x2, y2 = d.box
        lines.append(f"  {d.class_name:<{width}}  {d.score:.3f}  {x1:<7.1f} {y1:<7.1f} {x2:<7.1f} {y2:.1f}")
    return "\n".join(lines)
