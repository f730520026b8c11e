"""The end2end graph for TensorRT: the fused detector followed by TensorRT's ``EfficientNMS_TRT`` plugin.

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

import torch
from torch import nn

from .. import contract as C
from ..contract import MAX_DETECTIONS
from ..models import DAMOYOLO
from .onnx_export import DEFAULT_OPSET, INPUT_NAME, deploy_copy

END2END_OUTPUTS = tuple(t.name for t in C.END2END_OUTPUTS)  # num_dets, det_boxes, det_scores, det_classes
PLUGIN_DOMAIN = "TRT"
PLUGIN_OP = "EfficientNMS_TRT"


@dataclass(frozen=True)
class NMSSettings:
    score_threshold: float = 0.05
    iou_threshold: float = 0.65
    max_detections: int = MAX_DETECTIONS

    def __post_init__(self):
        if not 0.0 <= self.score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {self.score_threshold}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if not 1 <= self.max_detections <= 4096:
            raise ValueError(f"max_detections must be in 1..4096, got {self.max_detections}")


class _EfficientNMS(torch.autograd.Function):
    """Stands for the TensorRT plugin while tracing: the forward only produces outputs of the right
    shapes and types; ``symbolic`` writes the plugin node."""

    @staticmethod
    def forward(ctx, boxes, scores, score_threshold: float, iou_threshold: float, max_detections: int):
        batch = boxes.shape[0]
        return (torch.zeros(batch, 1, dtype=torch.int32),
                torch.zeros(batch, max_detections, 4, dtype=boxes.dtype),
                torch.zeros(batch, max_detections, dtype=scores.dtype),
                torch.zeros(batch, max_detections, dtype=torch.int32))

    @staticmethod
    def symbolic(g, boxes, scores, score_threshold: float, iou_threshold: float, max_detections: int):
        outputs = g.op(f"{PLUGIN_DOMAIN}::{PLUGIN_OP}", boxes, scores, outputs=4,
                       background_class_i=-1, box_coding_i=0, class_agnostic_i=0,
                       iou_threshold_f=float(iou_threshold), max_output_boxes_i=int(max_detections),
                       plugin_version_s="1", score_activation_i=0, score_threshold_f=float(score_threshold))
        k = int(max_detections)
        # declare the plugin's output types and shapes (batch stays dynamic) so the graph carries them
        for value, sizes, dtype in zip(outputs, ([None, 1], [None, k, 4], [None, k], [None, k]),
                                       (torch.int32, torch.float32, torch.float32, torch.int32)):
            value.setType(boxes.type().with_dtype(dtype).with_sizes(sizes))
        return outputs


class End2End(nn.Module):
    def __init__(self, model: DAMOYOLO, nms: NMSSettings):
        super().__init__()
        self.model, self.nms = model, nms

    def forward(self, images: torch.Tensor):
        scores, boxes = self.model(images)
        return _EfficientNMS.apply(boxes, scores, self.nms.score_threshold, self.nms.iou_threshold,
                                   self.nms.max_detections)


def export_end2end_onnx(model: DAMOYOLO, path: Union[str, Path], nms: NMSSettings = NMSSettings(),
                        input_size=None, opset: int = DEFAULT_OPSET) -> Path:
    """Write the end2end ONNX graph (dynamic batch) and check it with the ONNX checker."""
    import onnx
    height, width = input_size or model.cfg.input_size
    if height % 32 or width % 32:
        raise ValueError(f"input size {height}x{width} must be a multiple of 32 on both sides")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = End2End(deploy_copy(model), nms).eval()
    axes = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in END2END_OUTPUTS}}
    with torch.no_grad():
        torch.onnx.export(net, torch.zeros(1, 3, height, width), str(path), input_names=[INPUT_NAME],
                          output_names=list(END2END_OUTPUTS), dynamic_axes=axes, opset_version=opset,
                          custom_opsets={PLUGIN_DOMAIN: 1}, do_constant_folding=True, dynamo=False)
    graph = onnx.load(str(path))
    graph.producer_name = "damo-yolo"
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    return path
