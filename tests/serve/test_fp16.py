"""The FP16 graph a strongly typed TensorRT network is built from (damo_yolo.serving.fp16), run by onnxruntime on
the CPU: the demo repository's detector converted keeps the contract's float32 input and outputs, carries
float16 weights, and scores and places the demo model's confident detections as the FP32 graph does on
synthetic images."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from damo_yolo.serving.fp16 import graph_precision, to_fp16

ROOT = Path(__file__).resolve().parents[2]
DETECTOR = ROOT / "triton_models" / "damo_yolo" / "1" / "model.onnx"


def test_fp16_graph_keeps_the_contract_and_the_detections(tmp_path):
    import onnx
    import onnxruntime as ort

    from damo_yolo.data.synthetic import generate_split
    fp16 = to_fp16(DETECTOR, tmp_path / "fp16.onnx")
    assert graph_precision(DETECTOR) == "fp32" and graph_precision(fp16) == "fp16"
    assert graph_precision(tmp_path / "missing.onnx") is None
    model = onnx.load(str(fp16))
    assert [(t.name, t.type.tensor_type.elem_type) for t in (*model.graph.input, *model.graph.output)] == [
        ("images", onnx.TensorProto.FLOAT), ("scores", onnx.TensorProto.FLOAT), ("boxes", onnx.TensorProto.FLOAT)]
    h, w = (d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[2:])
    generate_split(tmp_path / "synthetic", "val", 8, (h, w), seed=3, photos=[])  # procedural backgrounds
    from damo_yolo.data.preprocess import decode_image, preprocess
    images = np.stack([preprocess(decode_image(p.read_bytes()), (h, w))[0]
                       for p in sorted((tmp_path / "synthetic" / "val").glob("*.jpg"))])
    run32 = ort.InferenceSession(str(DETECTOR), providers=["CPUExecutionProvider"])
    run16 = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"])
    scores32, boxes32 = run32.run(None, {"images": images})
    scores16, boxes16 = run16.run(None, {"images": images})
    confident = scores32.max(-1) > 0.3
    assert confident.sum() >= 8, "the demo model should find objects on its own kind of images"
    assert np.abs(scores16 - scores32).max() < 5e-3
    assert np.abs(boxes16 - boxes32)[confident].max() < 1.0  # pixels of the model input
