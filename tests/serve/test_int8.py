"""INT8 by explicit quantization: `damo-export --precision int8` writes a Q/DQ ONNX calibrated on training images,
laid out for the runtime of its target. The CPU target's (U8S8, operator outputs quantized, head in float) is what
onnxruntime fuses into integer kernels; served through the real tritonserver its COCO mAP on the synthetic val set
stays within half a point of the FP32 model's (served both). The GPU target's is laid out as TensorRT's explicit
quantization expects, and NVIDIA's polygraphy reads the end2end graph built from it."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from serving import running_server

MAX_MAP_DROP = 0.005  # INT8 against FP32, mAP@[.5:.95] absolute


@pytest.fixture(scope="module")
def int8_export(trained_synthetic, tmp_path_factory):
    from damo_yolo.tools.export import export_repository
    data = trained_synthetic["data"]
    repo = export_repository(trained_synthetic["checkpoint"], tmp_path_factory.mktemp("int8") / "triton_models",
                             thresholds="evaluation", precision="int8", calibration_images=data / "train",
                             cpu_runtime="onnxruntime",
                             validation=(data / "annotations" / "instances_val.json", data / "val"))
    return repo


@pytest.fixture(scope="module")
def tensorrt_qdq(trained_synthetic, tmp_path_factory):
    """The GPU target's Q/DQ ONNX of the same model (the graph its TensorRT plan is built from)."""
    from damo_yolo.models import load_model
    from damo_yolo.serving.onnx_export import export_onnx
    from damo_yolo.serving.quantize import quantize_onnx
    model, meta = load_model(trained_synthetic["checkpoint"])
    tmp = tmp_path_factory.mktemp("tensorrt_qdq")
    fp32 = export_onnx(model, tmp / "fp32.onnx", input_size=tuple(meta.input_size))
    return quantize_onnx(fp32, tmp / "int8.onnx", trained_synthetic["data"] / "train", tuple(meta.input_size),
                         meta.resize, meta.pad_value, layout="tensorrt")


def _initializers(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _consumers(model) -> dict[str, list[str]]:
    consumers: dict[str, list[str]] = {}
    for n in model.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n.op_type)
    return consumers


def test_the_gpu_int8_graph_is_quantized_as_tensorrt_expects(tensorrt_qdq):
    """Symmetric INT8 (zero points 0), per-channel weight scales, Q/DQ on the inputs of every Conv and nowhere
    else, float biases; the ONNX checker accepts it."""
    model = onnx.load(str(tensorrt_qdq))
    onnx.checker.check_model(model, full_check=True)
    values, producer = _initializers(model), {o: n for n in model.graph.node for o in n.output}
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dequantize = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert quantize and dequantize
    for node in quantize + dequantize:
        zero = values[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), node.name
    consumers = _consumers(model)
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


def test_the_cpu_int8_graph_is_what_onnxruntime_runs_in_integers(int8_export, tmp_path):
    """U8S8: uint8 activations, symmetric int8 weights with per-channel scales, every Conv outside the head read
    and written through Q/DQ, the head in float; onnxruntime's optimizer turns every quantized Conv into an integer
    QLinearConv (the TensorRT layout: almost none). The export records the layout."""
    import onnxruntime as ort

    from damo_yolo.serving.quantize import FLOAT_SCOPE
    from damo_yolo.serving.repository import repository_serving, repository_summary
    path = int8_export / "damo_yolo" / "1" / "model.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    values, producer = _initializers(model), {o: n for n in model.graph.node for o in n.output}
    consumers = _consumers(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    body = [c for c in convs if not c.name.startswith(FLOAT_SCOPE)]
    head = [c for c in convs if c.name.startswith(FLOAT_SCOPE)]
    assert len(body) > 50 and head
    for conv in body:
        data, weight = (producer.get(name) for name in conv.input[:2])
        assert data.op_type == weight.op_type == "DequantizeLinear", conv.name
        assert values[data.input[2]].dtype == np.uint8, conv.name  # activations: uint8, with a zero point
        assert values[weight.input[0]].dtype == np.int8 and not values[weight.input[2]].any(), conv.name
        assert values[weight.input[1]].shape == (values[weight.input[0]].shape[0],), conv.name
        assert consumers[conv.output[0]] == ["QuantizeLinear"], f"{conv.name}: output not quantized"
    for conv in head:  # float weights, no integer kernel
        assert values[conv.input[1]].dtype == np.float32, conv.name
    activations = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert all(values[n.input[2]].dtype == np.uint8 for n in activations)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert ops.count("QLinearConv") == len(body) and ops.count("Conv") == len(head), sorted(set(ops))
    assert repository_serving(int8_export).precision == "int8"
    record = repository_summary(int8_export)["quantization"]
    assert record["layout"] == "cpu" and record["calibration_images"] == 128
    accuracy = record["accuracy"]  # measured by the export through the served pipeline: within the budget as it is
    assert accuracy["budget"] == 0.01 and accuracy["float_layers"] == [], accuracy
    assert accuracy["fp32_map"] - accuracy["int8_map"] <= 0.01 and accuracy["fp32_map"] > 0.3, accuracy


def test_reduce_range_keeps_the_weights_to_7_bits(trained_synthetic, tmp_path):
    """``--reduce-range`` (for CPUs without VNNI): every INT8 weight within ±64, the activations still uint8."""
    from damo_yolo.models import load_model
    from damo_yolo.serving.onnx_export import export_onnx
    from damo_yolo.serving.quantize import Quantizer
    model, meta = load_model(trained_synthetic["checkpoint"])
    fp32 = export_onnx(model, tmp_path / "fp32.onnx", input_size=tuple(meta.input_size))
    quantizer = Quantizer(fp32, trained_synthetic["data"] / "train", tuple(meta.input_size), meta.resize,
                          meta.pad_value, max_images=16, layout="cpu", workdir=tmp_path / "q", reduce_range=True)
    model8 = onnx.load(str(quantizer.quantize(tmp_path / "int8.onnx")))
    weights = [numpy_helper.to_array(t) for t in model8.graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and t.dims]
    assert len(weights) > 50 and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) > 32  # 7 bits used, not fewer


def test_the_budget_needs_a_validation_set_and_the_cpu_target(tmp_path):
    from damo_yolo.tools.export import ExportOptions
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "grey.png"), np.full((64, 64, 3), 114, np.uint8))
    annotations = tmp_path / "val.json"
    annotations.write_text("{}")
    with pytest.raises(ValueError, match="--accuracy-budget is kept on a validation set"):
        ExportOptions(precision="int8", calibration_images=images, accuracy_budget=0.5)
    with pytest.raises(ValueError, match="--validation measures an INT8 export of the cpu target"):
        ExportOptions(validation=(annotations, images))
    options = ExportOptions(precision="int8", calibration_images=images, validation=(annotations, images))
    assert options.accuracy_budget == 1.0


def test_an_int8_export_over_its_budget_keeps_sensitive_layers_in_float_or_refuses(trained_synthetic, tmp_path):
    """A budget of 0 points on 30 validation images: the export keeps the layers most sensitive to INT8 in float
    (1, 2, 4, ...) until INT8 is as good as FP32 — the record says which and both mAPs — or refuses in one line
    with the figures."""
    import json

    from damo_yolo.serving.quantize import AccuracyBudgetExceeded
    from damo_yolo.tools.export import export_repository
    data = trained_synthetic["data"]
    coco = json.loads((data / "annotations" / "instances_val.json").read_text())
    coco["images"] = coco["images"][:30]
    kept = {im["id"] for im in coco["images"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in kept]
    annotations = tmp_path / "val30.json"
    annotations.write_text(json.dumps(coco))
    said: list[str] = []
    try:
        repo = export_repository(trained_synthetic["checkpoint"], tmp_path / "triton_models", progress=said.append,
                                 thresholds="evaluation", precision="int8", calibration_images=data / "train",
                                 cpu_runtime="onnxruntime", validation=(annotations, data / "val"),
                                 accuracy_budget=0.0)
    except AccuracyBudgetExceeded as exc:
        message = str(exc)
        print(f"\n[budget] refused: {message}")
        assert "\n" not in message and re.search(r"INT8 mAP 0\.\d{4} against FP32 0\.\d{4}", message), message
        assert "even with all" in message and "and their activations in float" in message, message
        assert "--accuracy-budget" in message
        return
    from damo_yolo.serving.repository import repository_summary
    accuracy = repository_summary(repo)["quantization"]["accuracy"]
    print(f"\n[budget] {len(accuracy['float_layers'])} layer(s) in float: {accuracy}")
    assert accuracy["budget"] == 0 and accuracy["int8_map"] >= accuracy["fp32_map"], accuracy
    assert any("ranking" in line for line in said) or not accuracy["float_layers"], said
    model = onnx.load(str(repo / "damo_yolo" / "1" / "model.onnx"))
    values, consumers = _initializers(model), _consumers(model)
    for conv in (n for n in model.graph.node if n.name in accuracy["float_layers"]):  # weights, output, activation
        assert values[conv.input[1]].dtype == np.float32, conv.name
        readers = consumers[conv.output[0]]
        if {"Relu", "Sigmoid"} & set(readers):  # its activation reads it in float (a residual Add alone: quantized)
            assert "QuantizeLinear" not in readers, (conv.name, readers)


@pytest.mark.slow
def test_int8_served_on_the_cpu_keeps_the_fp32_map(int8_export, served_synthetic, trained_synthetic, capsys):
    from damo_yolo.evaluation import evaluate_served
    data = trained_synthetic["data"]
    ann, images = data / "annotations" / "instances_val.json", data / "val"
    fp32 = evaluate_served(served_synthetic.http_url, ann, images)
    with running_server(int8_export, int8_export.parent / "server.log") as server:
        int8 = evaluate_served(server.http_url, ann, images)
        from click.testing import CliRunner

        from damo_client.cli import cli
        said = CliRunner().invoke(cli, ["models", "--url", server.http_url.replace("http://", "")])
    assert said.exit_code == 0, said.output
    assert "runtime onnxruntime" in said.output and "INT8: cpu layout, calibrated on 128 images" in said.output
    assert re.search(r"INT8 accuracy on \S+instances_val\.json: mAP 0\.\d{4} against FP32 0\.\d{4} \(budget "
                     r"1\.00 points\); every layer INT8", said.output), said.output
    drop = fp32["mAP"] - int8["mAP"]
    with capsys.disabled():  # the measurement belongs in CI's log
        print(f"\nsynthetic val, served on the CPU: FP32 mAP {fp32['mAP']:.4f} (AP50 {fp32['mAP_50']:.4f}), INT8 mAP "
              f"{int8['mAP']:.4f} (AP50 {int8['mAP_50']:.4f}): drop {drop:+.4f} (limit {MAX_MAP_DROP})")
    assert drop <= MAX_MAP_DROP


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_end2end_graphs_pass_nvidias_tooling(tensorrt_qdq, trained_synthetic, tmp_path, precision):
    """The end2end graph a GPU host builds its plan from (detector, FP32 or Q/DQ, + EfficientNMS_TRT), read by
    polygraphy (NVIDIA's, no GPU needed) and its NMS node checked against the plugin's documented contract
    (TensorRT plugin/efficientNMSPlugin/README.md: boxes [B, N, 4] and scores [B, N, C] float32 in;
    num_detections int32 [B, 1], boxes [B, K, 4], scores [B, K], classes int32 [B, K] out)."""
    import onnx_graphsurgeon as gs

    from damo_yolo.models import load_model
    from damo_yolo.serving.end2end import NMSSettings, append_nms
    from damo_yolo.serving.onnx_export import export_onnx
    model, meta = load_model(trained_synthetic["checkpoint"])
    detector = (tensorrt_qdq if precision == "int8"
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
