"""ONNX export: the onnx checker passes and onnxruntime reproduces PyTorch at batch 1 and 4, within float32
rounding of the model run in float64 (tolerances in tests/numerics.py), so the check holds on any CPU."""
from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from numerics import assert_float32_close

from damo_yolo.models import build_model, load_checkpoint
from damo_yolo.serving.onnx_export import INPUT_NAME, OUTPUT_NAMES, export_onnx


@pytest.fixture(scope="module")
def official_ns(shared_dir):
    """The official Ns on the shared fixture weights, and the fixture's real-valued inputs."""
    fixtures = shared_dir / "fixtures" / "official"
    model = build_model("Ns")
    load_checkpoint(model, fixtures / "Ns_weights.pth")
    inputs = torch.load(fixtures / "Ns_outputs.pt", weights_only=False)["inputs"]  # trusted shared fixture
    return model, inputs


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _compare(session, model, x, what: str):
    """onnxruntime (float32) against the same fused model run in float64."""
    scores, boxes = session.run(None, {INPUT_NAME: x.numpy()})
    exact = copy.deepcopy(model).double()
    with torch.inference_mode():
        want_scores, want_boxes = exact(x.double())
    assert scores.dtype == np.float32
    assert_float32_close(scores, boxes, want_scores, want_boxes, what)


def test_onnxruntime_matches_pytorch_at_batch_1_and_4(tmp_path, official_ns):
    model, inputs = official_ns
    path = export_onnx(model, tmp_path / "ns.onnx")
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version >= 17
    assert [i.name for i in graph.graph.input] == [INPUT_NAME]
    assert [o.name for o in graph.graph.output] == list(OUTPUT_NAMES)
    assert not any(n.op_type == "BatchNormalization" for n in graph.graph.node), "BN not folded"
    session = _session(path)
    fused = model.switch_to_deploy().eval()
    x1 = inputs["x1"]
    for x in (x1, torch.cat([x1, x1.flip(3), x1.flip(2), 255 - x1])):
        _compare(session, fused, x, f"batch {x.shape[0]}")


def test_dynamic_height_and_width(tmp_path, official_ns):
    model, inputs = official_ns
    session = _session(export_onnx(model, tmp_path / "dyn.onnx", dynamic_hw=True))
    _compare(session, model.switch_to_deploy().eval(), inputs["x2"], "dynamic 320x416")  # [2, 3, 320, 416]


def test_repconv_model_exports_fused_and_leaves_the_caller_alone(tmp_path):
    model = build_model("T", num_classes=3)
    path = export_onnx(model, tmp_path / "t.onnx", input_size=(128, 160))
    assert not model.is_deployed, "export must not fuse the caller's model"
    initializers = {i.name for i in onnx.load(str(path)).graph.initializer}
    assert not any("rbr_dense" in name or "rbr_1x1" in name for name in initializers)
    scores, boxes = _session(path).run(None, {INPUT_NAME: np.zeros((2, 3, 128, 160), np.float32)})
    assert scores.shape == (2, 420, 3) and boxes.shape == (2, 420, 4)


def test_bad_export_arguments(tmp_path):
    model = build_model("Ns")
    with pytest.raises(ValueError, match="multiple of 32"):
        export_onnx(model, tmp_path / "x.onnx", input_size=(250, 256))
    with pytest.raises(ValueError, match="opset 11 is too old"):
        export_onnx(model, tmp_path / "x.onnx", opset=11)
