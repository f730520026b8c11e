"""Detections as the client returns them, and their COCO-results / table forms."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Detection:
    """One detected object; ``box`` is (x1, y1, x2, y2) in original image pixels."""

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    class_name: str

    def to_coco(self, image_id: int, category_id: int | None = None) -> dict:
        """The COCO results entry: ``bbox`` is (x, y, width, height); ``category_id`` defaults to class_id."""
        x1, y1, x2, y2 = self.box
        return {"image_id": image_id, "category_id": self.class_id if category_id is None else category_id,
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(self.score, 5)}

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
