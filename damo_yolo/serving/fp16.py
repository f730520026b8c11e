"""FP16 detector graphs for TensorRT's strongly typed networks.

From TensorRT 11 a network takes its precision from the ONNX graph itself: there is no FP16 builder flag, so an
FP16 plan is built from an ONNX whose weights and activations are float16. :func:`to_fp16` converts the
detector graph with onnxruntime's float16 converter (``onnxruntime.transformers.float16``), keeping the
graph's input and outputs float32 (one Cast at each end), so the contract's tensors and the NMS appended after
it are unchanged. onnxruntime runs the converted graph on the CPU too, which is how its accuracy is checked
without a GPU. :func:`graph_precision` tells which precision a graph carries (the builder checks it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

FLOAT16 = 10  # onnx.TensorProto.FLOAT16


def to_fp16(fp32_path: Union[str, Path], out_path: Union[str, Path]) -> Path:
    """Write ``fp32_path``'s graph with float16 weights and activations at ``out_path`` (input and outputs stay
    float32); checked with the ONNX checker."""
    import onnx
    import onnx_graphsurgeon as gs
    from onnxruntime.transformers.float16 import convert_float_to_float16
    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    graph = gs.import_onnx(model)  # the converter appends its Casts last: put the nodes in order again
    graph.cleanup().toposort()
    model = gs.export_onnx(graph)
    model.producer_name = "damo-yolo"
    onnx.checker.check_model(model, full_check=True)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return out_path


def graph_precision(onnx_path: Union[str, Path]) -> Optional[str]:
    """"int8" for a graph with Q/DQ nodes, "fp16" for one whose weights are float16, else "fp32"; None for what
    is no readable ONNX graph (the parser that reads it next says why)."""
    import onnx
    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception:
        return None
    if any(node.op_type == "QuantizeLinear" for node in graph.node):
        return "int8"
    if any(init.data_type == FLOAT16 for init in graph.initializer):
        return "fp16"
    return "fp32"
