"""The committed demo: the small synthetic-shapes model in demo/model/, the repository in triton_models/
exported from it (no drift from a fresh export), and the demo command end to end with the real server."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numerics import assert_float32_close

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "model"
CHECKPOINT = DEMO / "damoyolo_tinynasL18_Ns_synthetic.pth"
REPO = ROOT / "triton_models"


def test_committed_repository_is_the_demo_checkpoint_exported(tmp_path):
    from damo_yolo.serving.repository import repository_summary, validate_repository
    from damo_yolo.tools.export import export_repository
    validate_repository(REPO)
    assert repository_summary(REPO)["checkpoint_sha256"] == hashlib.sha256(CHECKPOINT.read_bytes()).hexdigest()
    fresh = export_repository(CHECKPOINT, tmp_path / "triton_models")
    for config in sorted(fresh.glob("*/config.pbtxt")) + sorted(fresh.glob("*/1/model.py")) + \
            [fresh / "damo_yolo" / "labels.txt"]:
        relative = config.relative_to(fresh)
        assert (REPO / relative).read_text() == config.read_text(), f"{relative} drifted: re-run the export"


def test_committed_onnx_equals_the_checkpoint_in_pytorch(tmp_path):
    import onnxruntime as ort
    import torch

    from damo_yolo.data.preprocess import decode_image, preprocess
    from damo_yolo.models import build_model, load_checkpoint
    model = build_model("Ns", num_classes=8)
    meta = load_checkpoint(model, CHECKPOINT)
    model.eval().switch_to_deploy()
    session = ort.InferenceSession(str(REPO / "damo_yolo" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    from damo_yolo.data.synthetic import generate_split
    generate_split(tmp_path, "check", 2, (320, 320), 5, [])  # procedural backgrounds
    images = sorted((tmp_path / "check").glob("*.jpg"))
    x = np.stack([preprocess(decode_image(p.read_bytes()), tuple(meta.input_size))[0] for p in images])
    scores, boxes = session.run(None, {"images": x})
    with torch.inference_mode():  # the float64 truth: the comparison holds on any CPU
        want_scores, want_boxes = model.double()(torch.from_numpy(x).double())
    assert_float32_close(scores, boxes, want_scores, want_boxes, "committed ONNX vs demo checkpoint")


def test_recorded_metrics_are_the_checkpoints():
    import torch
    ckpt = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    recorded = json.loads((DEMO / "metrics.json").read_text())
    assert recorded["coco/mAP"] == pytest.approx(ckpt["meta"]["metrics"]["coco/mAP"])
    assert recorded["coco/mAP"] >= 0.5
    assert (DEMO / "config.py").is_file() and "max_epochs = 40" in (DEMO / "config.py").read_text()


@pytest.mark.slow
def test_demo_command_serves_and_detects(tmp_path):
    run = subprocess.run([str(Path(sys.executable).parent / "damo-demo"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    detections = json.loads((tmp_path / "out" / "detections.json").read_text())
    # the repository's served default (0.5, damo_yolo.contract): a few boxes per scene, not hundreds
    assert detections and all(d["score"] > 0.5 for d in detections) and len(detections) <= 15 * 6
    assert len(list((tmp_path / "out" / "annotated").glob("*.jpg"))) == 6
    found, total = map(int, re.search(r"found (\d+) of the (\d+) shapes", run.stdout).groups())
    assert found >= 0.6 * total, run.stdout[-1500:]


def test_demo_results_folder_holds_only_the_last_run(tmp_path):
    from damo_yolo.tools.demo import MARKER, prepare_out
    out = tmp_path / "demo_output"
    prepare_out(out)
    (out / "annotated").mkdir()
    (out / "annotated" / "old_scene.jpg").write_bytes(b"from the run before")
    (out / "detections.json").write_text("[]")
    prepare_out(out)  # the next run starts clean
    assert sorted(p.name for p in out.iterdir()) == [MARKER]
    mine = tmp_path / "my_photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"a user's file")
    with pytest.raises(FileExistsError, match="did not write"):
        prepare_out(mine)
    assert (mine / "holiday.jpg").exists()
    help_text = subprocess.run([sys.executable, "-m", "damo_yolo.tools.demo", "--help"], capture_output=True,
                               text=True).stdout
    assert "(default: the repository's served default)" in " ".join(help_text.split())
    assert "(default: http)" in help_text
    assert help_text.count("(default:") >= 6 and "None" not in help_text


def test_the_shipped_synthetic_config_has_the_demo_models_settings():
    """demo/model/config.py is mmengine's dump of the run that trained the demo model, made before the
    recipe became a pipeline of transforms and param_scheduler entries (and before SADA, outline-based
    rotated boxes and the reference's mixup details joined it: demo/model/training.md). Every value that
    run was configured with is where today's shipped config holds it; the transforms added since are listed."""
    from mmengine.config import Config

    from damo_yolo.training.config import load_config, value_at
    record = Config.fromfile(str(DEMO / "config.py"))
    today = load_config(ROOT / "train" / "configs" / "damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py")
    was = record.train_dataloader.dataset
    pipeline = "train_dataloader.dataset.pipeline"
    moved = {  # the record's train data set arguments → today's transforms
        "input_size": f"{pipeline}.Resize.scale", "keep_ratio": f"{pipeline}.Resize.keep_ratio",
        "mosaic_size": f"{pipeline}.Mosaic.img_scale", "mosaic_prob": f"{pipeline}.Mosaic.prob",
        "degrees": f"{pipeline}.RandomAffine.max_rotate_degree",
        "translate": f"{pipeline}.RandomAffine.max_translate_ratio",
        "scale": f"{pipeline}.RandomAffine.scaling_ratio_range", "shear": f"{pipeline}.RandomAffine.max_shear_degree",
        "mixup_prob": f"{pipeline}.MixUp.prob", "hsv_gains": f"{pipeline}.RandomHSV.gains",
    }
    plain = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    for key, place in moved.items():
        assert plain(was[key]) == plain(value_at(today, place)), key
    assert was.get("flip_prob", 0.5) == value_at(today, f"{pipeline}.RandomFlip.prob")
    schedule = record.custom_hooks[0]
    assert schedule["type"] == "DAMOScheduleHook"
    assert (today.warmup_epochs, today.no_aug_epochs, today.min_lr_ratio) == (
        schedule["warmup_epochs"], schedule["no_aug_epochs"], schedule["min_lr_ratio"])
    assert record.custom_hooks[1:] == today.custom_hooks[2:]  # the EMA (ramp 200) and the export hook
    for key in ("model", "optim_wrapper", "randomness"):
        added = {k for k in today[key] if k not in record[key]}
        assert added <= {"finetune", "teacher", "clip_grad", "depthwise_msra_init"}, added  # options added since
        assert {k: v for k, v in today[key].items() if k not in added} == record[key], key
    assert today.model.depthwise_msra_init is False  # the demo run's init (PyTorch's default there)
    assert record.train_cfg.max_epochs == today.train_cfg.max_epochs == 40
    for key in ("batch_size", "num_workers"):
        assert record.train_dataloader[key] == today.train_dataloader[key]
    added = [t["type"] for t in today.train_dataloader.dataset.pipeline if t["type"] not in
             {"Mosaic", "RandomAffine", "MixUp", "Resize", "RandomFlip", "RandomHSV", "PackDetInputs"}]
    assert added == ["FilterBoxes", "ScaleAwareBoxAugment"]  # the area filter was inside the old transform
