"""The mmengine model: official state-dict keys, a real optimiser step, predictions in original pixels."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from mmengine.optim import OptimWrapper

from damo_yolo.training.model import DAMOYOLODetector


def test_state_dict_is_the_official_layout(shared_dir):
    model = DAMOYOLODetector("Ns")
    reference = json.loads((shared_dir / "specs" / "checkpoint-keys" / "Ns.json").read_text())["state_dict"]
    assert list(model.state_dict()) == list(reference)
    plain = model.to_detector().eval()
    x = torch.rand(1, 3, 128, 160) * 255
    with torch.inference_mode():
        for a, b in zip(plain(x), model.eval()(x, mode="tensor")):
            assert torch.equal(a, b)


def test_train_step_updates_weights_and_reports_losses():
    torch.manual_seed(0)
    model = DAMOYOLODetector("Ns", num_classes=3)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    data = {"inputs": torch.rand(2, 3, 128, 128) * 255,
            "data_samples": [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([2])},
                             {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]}
    before = model.head.gfl_cls[0].weight.detach().clone()
    log_vars = model.train_step(data, wrapper)
    assert {"loss", "loss_qfl", "loss_giou", "loss_dfl"} <= set(log_vars)
    assert all(torch.isfinite(v) for v in log_vars.values()) and log_vars["loss_giou"] > 0
    assert not torch.equal(before, model.head.gfl_cls[0].weight)


def test_predict_maps_boxes_to_the_original_image_by_the_reference_protocol():
    """Every candidate enters NMS and boxes are not clipped to the image (the reference's evaluation)."""
    from damo_yolo.postprocess import postprocess
    model = DAMOYOLODetector("Ns", num_classes=2, score_threshold=0.0).eval()
    sample = {"img_id": 7, "scale": (128 / 300, 160 / 500), "orig_size": (300, 500)}
    inputs = torch.rand(1, 3, 128, 160) * 255
    with torch.inference_mode():
        (result,) = model.val_step({"inputs": inputs, "data_samples": [sample]})
        scores, boxes = model(inputs, mode="tensor")
    assert result["img_id"] == 7 and 0 < len(result["boxes"]) <= model.max_detections
    expected, _, _ = postprocess(scores[0].numpy(), boxes[0].numpy(), 0.0, model.iou_threshold, nms_pre=None)
    assert np.allclose(result["boxes"], expected / np.array([160 / 500, 128 / 300] * 2, np.float32), rtol=1e-6)
    assert (result["boxes"] < 0).any()  # random weights reach outside the image: kept as predicted
    assert np.all(np.diff(result["scores"]) <= 0)


@pytest.mark.parametrize("msra", [True, False])
def test_depthwise_downsamplers_get_the_reference_init_or_pytorchs(msra):
    """The reference initialises the Nano neck's DepthwiseConv with kaiming_normal (fan-out, ReLU gain):
    std sqrt(2 / (9 C)) for the 3x3 depthwise conv; PyTorch's default is std 1 / sqrt(3 · 9) ≈ 0.19."""
    from damo_yolo.models.layers import DepthwiseConv
    torch.manual_seed(0)
    model = DAMOYOLODetector("Ns", num_classes=8, depthwise_msra_init=msra)
    model.init_weights()
    convs = [m.depthwise.weight.detach() for m in model.modules() if isinstance(m, DepthwiseConv)]
    assert convs
    for weight in convs:
        want = math.sqrt(2 / (9 * weight.shape[0])) if msra else 1 / math.sqrt(27)
        assert abs(float(weight.std()) / want - 1) < 0.15
