"""Channel-wise distillation: hand-checked values, the weight schedule, and a teacher in the loop."""
from __future__ import annotations

import math

import pytest
import torch
from mmengine.optim import OptimWrapper

from damo_yolo.models import build_model, save_checkpoint
from damo_yolo.training.distill import channel_wise_distillation, distill_weight
from damo_yolo.training.model import DAMOYOLODetector


def test_cwd_is_zero_for_identical_maps_and_matches_a_hand_value():
    x = torch.randn(2, 3, 4, 5)
    assert channel_wise_distillation(x, x).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.zeros(1, 1, 1, 2)  # softmax (0.5, 0.5)
    teacher = torch.tensor([[[[math.log(3.0), 0.0]]]])  # softmax (0.75, 0.25)
    want = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert channel_wise_distillation(student, teacher).item() == pytest.approx(want, rel=1e-5)


def test_distill_weight_decays_from_one_to_a_tenth():
    assert distill_weight(0.0) == pytest.approx(1.0)
    assert distill_weight(0.5) == pytest.approx(0.55)
    assert distill_weight(1.0) == pytest.approx(0.1)


def test_student_trains_against_a_frozen_teacher(tmp_path):
    teacher = build_model("Nm", num_classes=3)
    save_checkpoint(tmp_path / "teacher.pth", teacher)
    (tmp_path / "teacher.py").write_text("model = dict(type='DAMOYOLODetector', variant='Nm', num_classes=3)\n")
    student = DAMOYOLODetector("Ns", num_classes=3, teacher=dict(config=str(tmp_path / "teacher.py"),
                                                                 checkpoint=str(tmp_path / "teacher.pth")))
    assert not any(k.startswith("_teacher") for k in student.state_dict())  # never saved with the student
    assert [conv.out_channels for conv in student.distiller.align] == [64, 128, 256]
    wrapper = OptimWrapper(torch.optim.SGD(student.parameters(), lr=0.01))
    data = {"inputs": torch.rand(2, 3, 128, 128) * 255,
            "data_samples": [{"boxes": torch.tensor([[10.0, 10.0, 70.0, 90.0]]), "labels": torch.tensor([1])}] * 2}
    teacher_before = student._teacher.neck.merge_3.conv1.conv.weight.clone()
    align_before = student.distiller.align[0].weight.detach().clone()
    log_vars = student.train_step(data, wrapper)
    assert log_vars["loss_distill"] > 0 and torch.isfinite(log_vars["loss"])
    assert torch.equal(teacher_before, student._teacher.neck.merge_3.conv1.conv.weight)
    assert not torch.equal(align_before, student.distiller.align[0].weight)
