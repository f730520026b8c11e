"""The end2end graph: one EfficientNMS_TRT node with the intended attributes, fed by the detector."""
from __future__ import annotations

import onnx
import pytest
from onnx import helper

from damo_yolo.models import build_model
from damo_yolo.serving.end2end import END2END_OUTPUTS, NMSSettings, export_end2end_onnx


def test_graph_ends_in_the_efficient_nms_plugin(tmp_path):
    path = export_end2end_onnx(build_model("Ns", num_classes=5), tmp_path / "e2e.onnx",
                               NMSSettings(score_threshold=0.25, iou_threshold=0.5, max_detections=50),
                               input_size=(160, 192))
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    nodes = [n for n in graph.graph.node if n.op_type == "EfficientNMS_TRT"]
    assert len(nodes) == 1 and nodes[0].domain == "TRT"
    attrs = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs["box_coding"] == 0 and attrs["background_class"] == -1 and attrs["score_activation"] == 0
    assert attrs["class_agnostic"] == 0 and attrs["max_output_boxes"] == 50 and attrs["plugin_version"] == b"1"
    assert attrs["iou_threshold"] == pytest.approx(0.5) and attrs["score_threshold"] == pytest.approx(0.25)
    assert [o.name for o in graph.graph.output] == list(END2END_OUTPUTS) == list(nodes[0].output)
    # the plugin reads the detector's boxes [B, N, 4] and scores [B, N, C]
    producers = {out: n for n in graph.graph.node for out in n.output}
    assert all(name in producers for name in nodes[0].input)
    assert {imp.domain: imp.version for imp in graph.opset_import}["TRT"] == 1
    batch_dims = [o.type.tensor_type.shape.dim[0].dim_param for o in graph.graph.output]
    assert batch_dims == ["batch"] * 4
    dims = [[d.dim_value for d in o.type.tensor_type.shape.dim[1:]] for o in graph.graph.output]
    assert dims == [[1], [50, 4], [50], [50]]


@pytest.mark.parametrize("kwargs,match", [(dict(score_threshold=1.5), "score_threshold"),
                                          (dict(iou_threshold=0.0), "iou_threshold"),
                                          (dict(max_detections=0), "max_detections")])
def test_nms_settings_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NMSSettings(**kwargs)
