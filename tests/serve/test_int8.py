"""INT8 by explicit quantization: `damo-export --precision int8` writes one Q/DQ ONNX, calibrated on training
images, laid out as TensorRT's explicit quantization expects (the GPU plan's source); the CPU target serves it
with onnxruntime through the real tritonserver, and its COCO mAP on the synthetic val set stays within one point
of the FP32 model's (measured here, served both). NVIDIA's polygraphy reads the end2end graphs built from it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from serving import running_server

MAX_MAP_DROP = 0.01  # INT8 against FP32, mAP@[.5:.95] absolute


@pytest.fixture(scope="module")
def int8_export(trained_synthetic, tmp_path_factory):
    from damo_yolo.tools.export import export_repository
    repo = export_repository(trained_synthetic["checkpoint"], tmp_path_factory.mktemp("int8") / "triton_models",
                             thresholds="evaluation", precision="int8",
                             calibration_images=trained_synthetic["data"] / "train")
    return repo


def _initializers(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_the_int8_graph_is_quantized_as_tensorrt_expects(int8_export):
    """Symmetric INT8 (zero points 0), per-channel weight scales, Q/DQ on the inputs of every Conv and nowhere
    else, float biases; the ONNX checker accepts it."""
    model = onnx.load(str(int8_export / "damo_yolo" / "1" / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    values, producer = _initializers(model), {o: n for n in model.graph.node for o in n.output}
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dequantize = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert quantize and dequantize
    for node in quantize + dequantize:
        zero = values[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), node.name
    consumers = {}
    for n in model.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n.op_type)
    assert all(consumers[q.output[0]] == ["DequantizeLinear"] for q in quantize)
    assert all("Conv" in consumers[d.output[0]] for d in dequantize)  # Q/DQ only where a Conv reads
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) > 50
    for conv in convs:
        data, weight = (producer.get(name) for name in conv.input[:2])
        assert data is not None and data.op_type == "DequantizeLinear", conv.name
        assert weight is not None and weight.op_type == "DequantizeLinear", conv.name
        out_channels = values[weight.input[0]].shape[0]
        assert values[weight.input[1]].shape == (out_channels,), f"{conv.name}: weight scales not per channel"
        if len(conv.input) > 2:
            assert conv.input[2] in values and values[conv.input[2]].dtype == np.float32  # bias stays float
    from damo_yolo.serving.repository import repository_serving, repository_summary
    assert repository_serving(int8_export).precision == "int8"
    assert repository_summary(int8_export)["quantization"]["calibration_images"] == 128


@pytest.mark.slow
def test_int8_served_on_the_cpu_keeps_the_fp32_map(int8_export, served_synthetic, trained_synthetic, capsys):
    from damo_yolo.evaluation import evaluate_served
    data = trained_synthetic["data"]
    ann, images = data / "annotations" / "instances_val.json", data / "val"
    fp32 = evaluate_served(served_synthetic.http_url, ann, images)
    with running_server(int8_export, int8_export.parent / "server.log") as server:
        int8 = evaluate_served(server.http_url, ann, images)
    drop = fp32["mAP"] - int8["mAP"]
    with capsys.disabled():  # the measurement belongs in CI's log
        print(f"\nsynthetic val, served on the CPU: FP32 mAP {fp32['mAP']:.4f} (AP50 {fp32['mAP_50']:.4f}), INT8 mAP "
              f"{int8['mAP']:.4f} (AP50 {int8['mAP_50']:.4f}): drop {drop:+.4f} (limit {MAX_MAP_DROP})")
    assert drop <= MAX_MAP_DROP


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_end2end_graphs_pass_nvidias_tooling(int8_export, trained_synthetic, tmp_path, precision):
    """The end2end graph a GPU host builds its plan from (detector, FP32 or Q/DQ, + EfficientNMS_TRT), read by
    polygraphy (NVIDIA's, no GPU needed) and its NMS node checked against the plugin's documented contract
    (TensorRT plugin/efficientNMSPlugin/README.md: boxes [B, N, 4] and scores [B, N, C] float32 in;
    num_detections int32 [B, 1], boxes [B, K, 4], scores [B, K], classes int32 [B, K] out)."""
    import onnx_graphsurgeon as gs

    from damo_yolo.models import load_model
    from damo_yolo.serving.end2end import NMSSettings, append_nms
    from damo_yolo.serving.onnx_export import export_onnx
    model, meta = load_model(trained_synthetic["checkpoint"])
    detector = (int8_export / "damo_yolo" / "1" / "model.onnx" if precision == "int8"
                else export_onnx(model, tmp_path / "fp32.onnx", input_size=tuple(meta.input_size)))
    nms = NMSSettings(0.03, 0.65, 100)
    path = append_nms(detector, tmp_path / "end2end.onnx", nms)
    run = subprocess.run([str(Path(sys.executable).parent / "polygraphy"), "inspect", "model", str(path),
                          "--show", "layers", "attrs"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "EfficientNMS_TRT" in run.stdout and "max_output_boxes = 100" in run.stdout, run.stdout[-3000:]
    assert ("QuantizeLinear" in run.stdout) == (precision == "int8")

    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(onnx.load(str(path))))
    (node,) = [n for n in graph.nodes if n.op == "EfficientNMS_TRT"]
    boxes, scores = node.inputs
    h, w = meta.input_size
    num_priors, classes = sum((h // s) * (w // s) for s in (8, 16, 32)), len(meta.class_names)
    assert boxes.dtype == scores.dtype == np.float32
    assert list(boxes.shape[1:]) == [num_priors, 4] and len(scores.shape) == 3
    # the exporter may name the score dims instead of sizing them: then onnxruntime sizes them
    import onnxruntime as ort
    session = ort.InferenceSession(str(detector), providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {"images": np.zeros((2, 3, h, w), np.float32)})))
    assert out[scores.name].shape == (2, num_priors, classes) and out[boxes.name].shape == (2, num_priors, 4)
    assert {k: type(v) for k, v in node.attrs.items()} == {
        "background_class": int, "box_coding": int, "class_agnostic": int, "iou_threshold": float,
        "max_output_boxes": int, "plugin_version": str, "score_activation": int, "score_threshold": float}
    assert [(o.dtype, list(o.shape[1:])) for o in node.outputs] == [
        (np.int32, [1]), (np.float32, [100, 4]), (np.float32, [100]), (np.int32, [100])]
    assert [o.name for o in graph.outputs] == [o.name for o in node.outputs]
