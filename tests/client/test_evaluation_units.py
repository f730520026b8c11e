"""damo_client.evaluation without a server: a COCO file's ids for served answers, the figures pycocotools gives
(n/a where it says -1), and the errors a user meets, each naming its file or image."""
from __future__ import annotations

import json

import pytest

from damo_client.errors import ImageError
from damo_client.evaluation import AnnotationsError, CocoIds, category_ids, format_figure, score
from damo_client.results import Detection


def _write(tmp_path, images, categories, annotations=()):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "categories": categories, "annotations": list(annotations)}))
    return path


def _image(id_, name, w=100, h=100):
    return {"id": id_, "file_name": name, "width": w, "height": h}


def test_image_ids_by_file_name_relative_path_or_unique_base_name(tmp_path):
    path = _write(tmp_path, [_image(7, "a.jpg"), _image(9, "sub/b.jpg"), _image(11, "x/c.jpg"),
                             _image(12, "y/c.jpg")], [{"id": 1, "name": "disc"}])
    ids = CocoIds.load(path, ["disc"])
    assert ids.image_id(tmp_path / "val" / "a.jpg") == 7
    assert ids.image_id("elsewhere/b.jpg") == 9  # the base name is unique
    assert ids.image_id("data/x/c.jpg") == 11 and ids.image_id("y/c.jpg") == 12
    with pytest.raises(ImageError, match=r"c\.jpg: not an image of .*instances\.json"):
        ids.image_id("c.jpg")  # two files are named c.jpg: which one is ambiguous
    with pytest.raises(ImageError, match=r"other\.jpg: not an image of"):
        ids.image_id("other.jpg")


def test_categories_by_class_name_else_by_trainings_convention(tmp_path):
    cats = [{"id": 3, "name": "square"}, {"id": 1, "name": "disc"}]
    assert category_ids(["disc", "square"], cats) == [1, 3]
    assert category_ids(["a", "b"], cats) == [1, 3]  # unnamed: the i-th class is the i-th id ascending
    with pytest.raises(AnnotationsError, match="has 2 categories and does not name the served model's 3 classes"):
        category_ids(["a", "b", "c"], cats, "instances.json")
    ids = CocoIds.load(_write(tmp_path, [_image(5, "a.jpg")], cats), ["square", "disc"])
    rows = ids.rows(5, [Detection((1.0, 2.0, 11.0, 22.0), 0.9, 0, "square"), Detection((0, 0, 5, 5), 0.5, 1, "disc")])
    assert [(r["image_id"], r["category_id"], r["bbox"]) for r in rows] == [(5, 3, [1.0, 2.0, 10.0, 20.0]),
                                                                            (5, 1, [0.0, 0.0, 5.0, 5.0])]


def test_an_unreadable_annotations_file_is_named(tmp_path):
    with pytest.raises(AnnotationsError, match="missing.json: cannot read it"):
        CocoIds.load(tmp_path / "missing.json", ["disc"])
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(AnnotationsError, match="bad.json: not JSON"):
        CocoIds.load(bad, ["disc"])
    bad.write_text("[]")
    with pytest.raises(AnnotationsError, match="not a COCO annotations file"):
        CocoIds.load(bad, ["disc"])


def test_pycocotools_minus_one_is_not_a_zero(tmp_path):
    """A set with small objects only: pycocotools says -1 for medium and large (no such objects), which a table
    shows as n/a, not as 0.0000."""
    gt = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [10 * i, 10 * i, 8, 8], "area": 64, "iscrowd": 0}
          for i in range(3)]
    path = _write(tmp_path, [_image(1, "a.jpg")], [{"id": 1, "name": "disc"}], gt)
    results = [{"image_id": 1, "category_id": 1, "bbox": g["bbox"], "score": 0.9} for g in gt]
    stats, per_class, summary = score(path, results, [1])
    assert stats["AP"] == pytest.approx(1.0) and stats["AP_small"] == pytest.approx(1.0)
    assert stats["AP_medium"] is None and stats["AP_large"] is None and stats["AR_large"] is None
    assert per_class == {"disc": pytest.approx(1.0)} and "Average Precision" in summary
    assert format_figure(stats["AP_large"]) == "n/a" and format_figure(stats["AP"]) == "1.0000"
    nothing, _, _ = score(path, [], [1])  # no detection at all: 0 where there are objects, n/a where none
    assert nothing["AP"] == 0.0 and nothing["AP_small"] == 0.0 and nothing["AR100"] == 0.0
    assert nothing["AP_medium"] is None and nothing["AP_large"] is None and nothing["AR_large"] is None
