"""Triton python backend, GPU target: the end2end plan's detections (NMS done inside TensorRT) → the ensemble's
outputs in original pixels.

Inputs:  num_dets INT32 [1], det_boxes FP32 [K, 4] (input pixels), det_scores FP32 [K], det_classes INT32 [K],
         SCALE FP32 [2], ORIG_SIZE INT32 [2], SCORE_THRESHOLD / IOU_THRESHOLD FP32 [1] (optional)
Outputs: num_detections INT32 [1], boxes FP32 [K, 4], scores FP32 [K], classes INT32 [K]
Without SCORE_THRESHOLD the served default applies; one at or above the plan's own NMS threshold filters further;
one below it, or an IOU_THRESHOLD other than the plan's, gets a 400 saying why (the plan cannot recover what its
NMS dropped).
(names and types: damo_yolo.contract)
"""
import triton_python_backend_utils as pb_utils

from damo_yolo import contract as C
from damo_yolo.serving.detections import map_back
from damo_yolo.serving.triton.common import ErrorCounter, optional_input, respond_each, serving_config


class TritonPythonModel:
    def initialize(self, args):
        self.serving = serving_config(args)  # the served defaults, the plan's NMS thresholds and K
        self.errors = ErrorCounter(pb_utils, args)

    def _one_request(self, request):
        num_dets, det_boxes, det_scores, det_classes, scales, sizes = (
            pb_utils.get_input_tensor_by_name(request, t.name).as_numpy() for t in C.END2END_OUTPUTS + (C.SCALE,
                                                                                                      C.ORIG_SIZE))
        count = num_dets.shape[0]
        score_thr = optional_input(pb_utils, request, C.SCORE_THRESHOLD.name, self.serving.score_threshold, count)
        iou_thr = optional_input(pb_utils, request, C.IOU_THRESHOLD.name, self.serving.iou_threshold, count)
        outputs = map_back(num_dets, det_boxes, det_scores, det_classes, scales, sizes, score_thr, iou_thr,
                           self.serving)
        return [pb_utils.Tensor(t.name, value) for t, value in zip(C.ENSEMBLE_OUTPUTS, outputs)]

    def execute(self, requests):
        return respond_each(pb_utils, requests, self._one_request, self.errors)
