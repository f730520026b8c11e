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
    assert "[default: the repository's served default]" in " ".join(help_text.split())
    assert "[default: http]" in help_text
    assert help_text.count("[default:") >= 6 and "None" not in help_text


def test_the_demo_models_config_is_the_one_its_run_used():
    """demo/model/config.py is the configuration the checkpoint records of the run that trained it (its
    ``train_config``: mmengine's text of the config as damo-train resolved it); its top-level settings agree with
    where they take effect, it describes the checkpoint, and it is the shipped synthetic config as resolved today
    (but for what damo-train sets for the machine it runs on)."""
    import torch
    from mmengine.config import Config

    from damo_yolo.training.config import disagreements, load_config
    meta = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["meta"]
    text = (DEMO / "config.py").read_text()
    assert text == meta["train_config"], "demo/model/config.py is not the checkpoint's: write it from the checkpoint"
    record = Config.fromstring(text, ".py")
    assert disagreements(record) == []
    assert (record.variant, list(record.input_size), record.model.num_classes) == (
        meta["variant"], meta["input_size"], meta["num_classes"])
    assert record.max_epochs == 40 and meta["epoch"] <= 40
    today = load_config(ROOT / "train" / "configs" / "damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py")
    launch = {"work_dir", "launcher", "sync_bn", "env_cfg"}  # set by damo-train for the machine it runs on
    assert {k: v for k, v in record.to_dict().items() if k not in launch} == \
        {k: v for k, v in today.to_dict().items() if k not in launch}
