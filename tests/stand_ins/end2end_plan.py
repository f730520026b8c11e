"""Test stand-in for the GPU target's TensorRT plan on a host without a GPU: the same tensors as the end2end
plan (images → num_dets, det_boxes, det_scores, det_classes) computed by the detector's ONNX graph in
onnxruntime followed by the reference post-processing (class-aware NMS, top-K) that EfficientNMS_TRT
performs inside the plan, with the plan's thresholds from the config. It lets the real tritonserver run the
GPU ensemble's wiring and its map-back step here. The parameter ``defect: bgr`` makes it a deliberately wrong
plan (a graph fed its channels in the wrong order), for the tests that show a comparison catches one."""
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from damo_yolo import contract as C
from damo_yolo.postprocess import postprocess


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.score_threshold, self.iou_threshold = float(params["score_threshold"]), float(params["iou_threshold"])
        self.k = int(params["max_detections"])
        self.defect = params.get("defect", "")
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, C.MODEL_INPUT.name).as_numpy()
            if self.defect == "bgr":
                images = np.ascontiguousarray(images[:, ::-1])
            scores, boxes = self.session.run([C.MODEL_SCORES.name, C.MODEL_BOXES.name], {C.MODEL_INPUT.name: images})
            count = len(images)
            num = np.zeros((count, 1), np.int32)
            det_boxes = np.zeros((count, self.k, 4), np.float32)
            det_scores = np.zeros((count, self.k), np.float32)
            det_classes = np.zeros((count, self.k), np.int32)
            for i in range(count):
                b, s, c = postprocess(scores[i], boxes[i], self.score_threshold, self.iou_threshold, self.k)
                n = len(s)
                num[i, 0], det_boxes[i, :n], det_scores[i, :n], det_classes[i, :n] = n, b, s, c
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(t.name, v) for t, v in zip(C.END2END_OUTPUTS, (num, det_boxes, det_scores,
                                                                              det_classes))]))
        return responses
