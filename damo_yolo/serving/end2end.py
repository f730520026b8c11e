"""The end2end graph for TensorRT: the fused detector (FP32, or Q/DQ INT8) followed by TensorRT's
``EfficientNMS_TRT`` plugin.

Outputs ``num_dets`` int32 [B, 1], ``det_boxes`` float32 [B, K, 4] (x1, y1, x2, y2 in input pixels),
``det_scores`` float32 [B, K], ``det_classes`` int32 [B, K] (0-based), K = ``max_detections``.

Deliberate departures from the reference converter: ``box_coding = 0`` (corner coordinates — the head's
boxes are x1y1x2y2; the reference's ``box_coding = 1`` would read them as centre/size), and classes are
0-based as everywhere else in the project. NMS is per class (``class_agnostic = 0``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from .. import contract as C
from ..contract import MAX_DETECTIONS
from ..models import DAMOYOLO
from .onnx_export import DEFAULT_OPSET, export_onnx

END2END_OUTPUTS = tuple(t.name for t in C.END2END_OUTPUTS)  # num_dets, det_boxes, det_scores, det_classes
PLUGIN_DOMAIN = "TRT"
PLUGIN_OP = "EfficientNMS_TRT"


@dataclass(frozen=True)
class NMSSettings:
    """The plan's NMS: the evaluation thresholds of the reference by default; a repository's from its
    ServingConfig (``of``). Ranges: damo_yolo.contract."""
    score_threshold: float = 0.05
    iou_threshold: float = C.DEFAULT_IOU_THRESHOLD
    max_detections: int = MAX_DETECTIONS

    def __post_init__(self):
        C.SCORE_RANGE.check("score_threshold", self.score_threshold)
        C.IOU_RANGE.check("iou_threshold", self.iou_threshold)
        C.MAX_DETECTIONS_RANGE.check("max_detections", self.max_detections)

    @classmethod
    def of(cls, serving: C.ServingConfig) -> "NMSSettings":
        """The NMS inside a GPU repository's plan."""
        if serving.plan_score_threshold is None:
            raise ValueError("this serving configuration has no plan (plan_score_threshold is not set)")
        return cls(serving.plan_score_threshold, serving.iou_threshold, serving.max_detections)


def efficient_nms_attributes(nms: NMSSettings) -> dict:
    """The plugin's attributes (TensorRT's plugin/efficientNMSPlugin/README.md), typed as its creator reads them."""
    return {"background_class": -1, "box_coding": 0, "class_agnostic": 0, "iou_threshold": float(nms.iou_threshold),
            "max_output_boxes": int(nms.max_detections), "plugin_version": "1", "score_activation": 0,
            "score_threshold": float(nms.score_threshold)}


def append_nms(detector_onnx: Union[str, Path], path: Union[str, Path], nms: NMSSettings = NMSSettings()) -> Path:
    """The end2end graph: the detector graph at ``detector_onnx`` (FP32 or Q/DQ INT8) with its ``scores``
    [B, N, C] and ``boxes`` [B, N, 4] fed to one EfficientNMS_TRT node (with onnx-graphsurgeon, NVIDIA's graph
    editor), whose four outputs become the graph's. Checked with the ONNX checker."""
    import numpy as np
    import onnx
    import onnx_graphsurgeon as gs
    graph = gs.import_onnx(onnx.load(str(detector_onnx)))
    produced = {t.name: t for t in graph.outputs}
    if set(produced) != {C.MODEL_SCORES.name, C.MODEL_BOXES.name}:
        raise ValueError(f"{detector_onnx} is not the detector graph: outputs {sorted(produced)}")
    batch, k = "batch", int(nms.max_detections)
    outputs = [gs.Variable(name, dtype=dtype, shape=shape) for name, dtype, shape in zip(
        END2END_OUTPUTS, (np.int32, np.float32, np.float32, np.int32), ([batch, 1], [batch, k, 4], [batch, k],
                                                                        [batch, k]))]
    graph.nodes.append(gs.Node(op=PLUGIN_OP, name="efficient_nms", domain=PLUGIN_DOMAIN,
                               attrs=efficient_nms_attributes(nms),
                               inputs=[produced[C.MODEL_BOXES.name], produced[C.MODEL_SCORES.name]],
                               outputs=outputs))
    graph.outputs = outputs
    graph.cleanup().toposort()
    model = gs.export_onnx(graph)
    model.opset_import.append(onnx.helper.make_opsetid(PLUGIN_DOMAIN, 1))
    model.producer_name = "damo-yolo"
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def export_end2end_onnx(model: DAMOYOLO, path: Union[str, Path], nms: NMSSettings = NMSSettings(),
                        input_size=None, opset: int = DEFAULT_OPSET) -> Path:
    """Write the end2end ONNX graph (dynamic batch) of ``model``: its detector graph with the NMS appended."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        detector = export_onnx(model, Path(tmp) / "detector.onnx", input_size=input_size, opset=opset)
        return append_nms(detector, path, nms)
