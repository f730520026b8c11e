"""COCO-format loading: label mapping, and bad data handled as COCO tools would, never mid-epoch."""
from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

from damo_yolo.data.coco import CocoDetection, DataError
from damo_yolo.data.synthetic import CLASSES, generate_split


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, shared_dir):
    from damo_yolo.data.synthetic import load_backgrounds
    out = tmp_path_factory.mktemp("synthetic")
    ann = generate_split(out, "train", 12, (160, 192), seed=0, photos=load_backgrounds(shared_dir / "data" / "images"))
    return out, ann


def test_generator_is_deterministic_and_loadable(tmp_path, synthetic):
    _, ann = synthetic
    coco_json = json.loads(ann.read_text())
    assert len(coco_json["images"]) == 12 and len(coco_json["categories"]) == len(CLASSES) >= 8
    from pycocotools.coco import COCO
    assert len(COCO(str(ann)).getAnnIds()) >= 12
    sizes = [max(a["bbox"][2:]) for a in coco_json["annotations"]]
    assert min(sizes) >= 8 and max(sizes) <= 96  # from ~12 px to half the image (occlusion may trim)
    first = generate_split(tmp_path / "a", "val", 5, (160, 192), seed=3, photos=[])
    second = generate_split(tmp_path / "b", "val", 5, (160, 192), seed=3, photos=[])
    assert first.read_bytes() == second.read_bytes()
    for i in range(5):
        name = f"val/val_{i:06d}.jpg"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_samples_and_label_mapping(synthetic):
    out, ann = synthetic
    ds = CocoDetection(ann, out / "train")
    assert len(ds) == 12 and ds.class_names == [c.name for c in CLASSES]
    sample = ds.load(3)
    assert sample["img"].shape == (160, 192, 3) and sample["img"].dtype == np.uint8
    assert sample["boxes"].shape[1] == 4 and len(sample["boxes"]) == len(sample["labels"])
    assert (sample["boxes"][:, 2:] > sample["boxes"][:, :2]).all()
    assert [ds.label_to_cat_id(i) for i in range(ds.num_classes)] == list(range(1, 9))
    by_name = CocoDetection(ann, out / "train", class_names=["star", "disc"])
    assert by_name.cat_ids == [4, 1] and set(np.concatenate([r["labels"] for r in by_name.records])) <= {0, 1}


def _write(tmp_path, images, annotations):
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": [{"id": 7, "name": "thing"}]}))
    return ann


def test_bad_data_is_reported_and_survived(tmp_path, caplog):
    good = np.full((40, 50, 3), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), good)
    cv2.imwrite(str(tmp_path / "b.jpg"), good)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    images = [{"id": i, "file_name": f, "height": 40, "width": 50}
              for i, f in enumerate(["a.jpg", "missing.jpg", "broken.jpg", "b.jpg"], start=1)]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [30, 20, 40, 40], "iscrowd": 0},  # outside → clipped
        {"id": 2, "image_id": 1, "category_id": 7, "bbox": [10, 10, 0, 5], "iscrowd": 0},  # zero area → dropped
        {"id": 3, "image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5], "iscrowd": 1},  # crowd → not trained on
        {"id": 4, "image_id": 3, "category_id": 7, "bbox": [1, 1, 5, 5], "iscrowd": 0},
    ]  # b.jpg has no annotation: a background image
    with caplog.at_level(logging.WARNING):
        ds = CocoDetection(_write(tmp_path, images, annotations), tmp_path)
    text = caplog.text
    assert "missing.jpg" in text and "clipped" in text and "zero area" in text
    assert [r["file_name"] for r in ds.records] == ["a.jpg", "broken.jpg", "b.jpg"]
    assert ds.records[0]["boxes"].tolist() == [[30.0, 20.0, 50.0, 40.0]]
    assert len(ds.records[2]["boxes"]) == 0
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        served = [ds.load(i)["file_name"] for i in range(len(ds))]  # one pass never raises
    assert served == ["a.jpg", "b.jpg", "b.jpg"] and "cannot decode image" in caplog.text


@pytest.mark.parametrize("content,match", [("{not json", "not valid JSON"), ('{"images": []}', "no 'categories'"),
                                           ('{"images": [], "categories": []}', "no usable image")])
def test_unusable_annotation_files(tmp_path, content, match):
    (tmp_path / "ann.json").write_text(content)
    with pytest.raises(DataError, match=match):
        CocoDetection(tmp_path / "ann.json", tmp_path)


def test_unknown_class_names_are_named(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    ann = _write(tmp_path, [{"id": 1, "file_name": "a.jpg", "height": 8, "width": 8}], [])
    with pytest.raises(DataError, match=r"classes \['person'\] are not categories.*thing"):
        CocoDetection(ann, tmp_path, class_names=["person"])


def test_training_pass_survives_an_undecodable_image(tmp_path):
    from damo_yolo.training.data import DetectionTrainDataset, collate_detections
    for name in ("a.jpg", "b.jpg"):
        img = np.full((64, 80, 3), 90, np.uint8)
        img[10:40, 20:60] = (0, 0, 255)
        cv2.imwrite(str(tmp_path / name), img)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)  # a truncated JPEG
    images = [{"id": i, "file_name": f, "height": 64, "width": 80}
              for i, f in enumerate(["a.jpg", "bad.jpg", "b.jpg"], 1)]
    annotations = [{"id": i, "image_id": i, "category_id": 7, "bbox": [20, 10, 40, 30], "iscrowd": 0}
                   for i in (1, 2, 3)]
    pipeline = [dict(type="Mosaic", img_scale=(64, 64)), dict(type="RandomAffine", img_scale=(64, 64)),
                dict(type="MixUp", prob=1.0), dict(type="Resize", scale=(64, 64)), dict(type="PackDetInputs")]
    dataset = DetectionTrainDataset(_write(tmp_path, images, annotations), tmp_path, pipeline)
    loader = __import__("torch").utils.data.DataLoader(dataset, batch_size=3, collate_fn=collate_detections)
    for epoch in range(3):  # mosaic draws random partners, the bad image among them: never an exception
        dataset.set_epoch(epoch)
        batch = next(iter(loader))
        assert batch["inputs"].shape == (3, 3, 64, 64)


def test_empty_annotation_list_gives_background_images(tmp_path, caplog):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    with caplog.at_level(logging.WARNING):
        ds = CocoDetection(_write(tmp_path, [{"id": 1, "file_name": "a.jpg", "height": 8, "width": 8}], []), tmp_path)
    assert "no annotations" in caplog.text and len(ds) == 1 and len(ds.load(0)["boxes"]) == 0


def test_polygon_outlines_load_and_rle_or_box_only_objects_have_none(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((50, 50, 3), np.uint8))
    parts = [[10, 10, 20, 10, 20, 20], [30, 30, 40, 30, 40, 45]]
    rle = {"size": [50, 50], "counts": "abc"}
    annotations = [{"id": i, "image_id": 1, "category_id": 7, "bbox": [10, 10, 30, 35], "iscrowd": 0, **extra}
                   for i, extra in enumerate([{"segmentation": parts}, {"segmentation": rle}, {}], 1)]
    ds = CocoDetection(_write(tmp_path, [{"id": 1, "file_name": "a.jpg", "height": 50, "width": 50}], annotations),
                       tmp_path)
    joined, from_rle, box_only = ds.load(0)["polygons"]
    assert joined.tolist() == [[10, 10], [20, 10], [20, 20], [30, 30], [40, 30], [40, 45]]  # parts joined
    assert from_rle is None and box_only is None  # these fall back to the box corners under rotation
