"""Fine-tuning: backbone and neck from an official or project checkpoint, a fresh head for the config's classes
(the reference's load_pretrain_detector); mmengine's load_from reads both checkpoint formats."""
from __future__ import annotations

import pytest
import torch
from test_launch import ONE_EPOCH
from training_utils import ROOT, run_train, write_config

from damo_yolo.models import CheckpointError, build_model, save_checkpoint
from damo_yolo.models.checkpoint import CheckpointMeta
from damo_yolo.training.model import DAMOYOLODetector

DEMO = ROOT / "demo" / "model" / "damoyolo_tinynasL18_Ns_synthetic.pth"


def _official(path, variant="Ns", num_classes=80):
    """An official-layout file: {"model": state dict} with the DataParallel prefix, 80 COCO classes."""
    torch.manual_seed(0)
    state = build_model(variant, num_classes).state_dict()
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, path)
    return state


@pytest.mark.parametrize("layout", ["official", "project"])
def test_backbone_and_neck_come_from_the_checkpoint_and_the_head_is_fresh(tmp_path, layout):
    path = tmp_path / "start.pth"
    if layout == "official":
        source = _official(path)
    else:
        model = build_model("Ns", 80)
        source = model.state_dict()
        save_checkpoint(path, model, CheckpointMeta.for_variant("Ns", 80))
    student = DAMOYOLODetector("Ns", num_classes=3, finetune=str(path))
    student.init_weights()
    state = student.state_dict()
    taken = [k for k in state if k.startswith(("backbone.", "neck."))]
    assert taken and all(torch.equal(state[k], source[k]) for k in taken)
    assert state["head.gfl_cls.0.weight"].shape[0] == 3 and source["head.gfl_cls.0.weight"].shape[0] == 80
    head = [k for k in state if k.startswith("head.gfl_reg.") and k.endswith(".weight")]  # random-initialised
    assert head and not any(torch.equal(state[k], source[k]) for k in head)  # the head is freshly initialised


def test_a_checkpoint_of_another_variant_is_refused_with_its_name(tmp_path):
    _official(tmp_path / "t.pth", variant="T")
    with pytest.raises(CheckpointError, match=r"does not fit DAMO-YOLO-Ns's backbone and neck.*DAMO-YOLO-T's"):
        DAMOYOLODetector("Ns", num_classes=3, finetune=str(tmp_path / "t.pth")).init_weights()


def test_finetune_and_load_from_from_the_command_line(tmp_path, tiny_synthetic):
    config = write_config(tmp_path / "cfg.py", tiny_synthetic, **ONE_EPOCH)
    _official(tmp_path / "official_coco.pth")
    runs = {"demo": ("--finetune", str(DEMO)),
            "official": ("--finetune", str(tmp_path / "official_coco.pth")),
            "load_from": ("--cfg-options", f"load_from={DEMO}")}
    for name, args in runs.items():
        run = run_train(config, tmp_path / name, *args)
        assert run.returncode == 0, (name, run.stderr[-3000:])
        log = next((tmp_path / name).glob("*/*.log")).read_text()
        if name == "load_from":
            assert f"Load checkpoint from {DEMO}" in log and "size mismatch" not in log
        else:
            assert "backbone and neck loaded" in log and "head kept fresh" in log, log[-3000:]
        assert torch.load(tmp_path / name / "latest.pth", weights_only=True)["meta"]["num_classes"] == 8
    missing = run_train(config, tmp_path / "missing", "--finetune", str(tmp_path / "nope.pth"))
    assert (missing.returncode == 1
            and missing.stderr.strip() == f"Error: finetune checkpoint not found: {tmp_path / 'nope.pth'}")


@pytest.mark.parametrize("layout", ["official", "bare", "project"])
def test_load_from_hands_mmengine_the_weights_of_every_checkpoint_layout(tmp_path, layout):
    """What mmengine's Runner.load_checkpoint does with load_from: the hooks' after_load_checkpoint (ours
    first, then EMAHook's, which reads checkpoint["state_dict"]), then the weights into the model."""
    from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

    from damo_yolo.training.hooks import DetectorCheckpointFormat
    path = tmp_path / "ckpt.pth"
    if layout == "official":
        source = _official(path, num_classes=8)
    else:
        torch.manual_seed(1)
        model = build_model("Ns", 8)
        source = model.state_dict()
        if layout == "bare":
            torch.save(dict(source), path)
        else:
            save_checkpoint(path, model, CheckpointMeta.for_variant("Ns", 8))
    checkpoint = _load_checkpoint(str(path), map_location="cpu")
    DetectorCheckpointFormat().after_load_checkpoint(None, checkpoint)
    assert set(checkpoint["state_dict"]) == set(source)  # the "module." prefix is gone
    student = DAMOYOLODetector("Ns", num_classes=8)
    _load_checkpoint_to_model(student, checkpoint, strict=True)
    state = student.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.items())
