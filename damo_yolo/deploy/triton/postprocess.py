"""Triton python backend: score filter, class-aware NMS, top-k, boxes mapped back to the original image.

Inputs:  raw_scores FP32 [N, C], raw_boxes FP32 [N, 4], SCALE FP32 [2], ORIG_SIZE INT32 [2],
         SCORE_THRESHOLD FP32 [1] and IOU_THRESHOLD FP32 [1] (optional: the export's defaults otherwise)
Outputs: num_detections INT32 [1]; boxes FP32 [K, 4] (x1, y1, x2, y2, original pixels, clipped);
         scores FP32 [K]; classes INT32 [K] — padded to K rows, the first num_detections are valid.
(names and types: damo_yolo.contract)
"""
import triton_python_backend_utils as pb_utils

from damo_yolo import contract as C
from damo_yolo.deploy.triton.common import model_parameters, optional_input, respond_each
from damo_yolo.deploy.triton.detections import check_thresholds, pack
from damo_yolo.postprocess import postprocess


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        self.score_threshold = float(params["score_threshold"])
        self.iou_threshold = float(params["iou_threshold"])
        self.max_detections = int(params["max_detections"])

    def _one_request(self, request):
        scores, boxes, scales, sizes = (pb_utils.get_input_tensor_by_name(request, t.name).as_numpy()
                                        for t in (C.RAW_SCORES, C.RAW_BOXES, C.SCALE, C.ORIG_SIZE))
        count = scores.shape[0]
        score_thr = optional_input(pb_utils, request, C.SCORE_THRESHOLD.name, self.score_threshold, count)
        iou_thr = optional_input(pb_utils, request, C.IOU_THRESHOLD.name, self.iou_threshold, count)
        check_thresholds(score_thr, iou_thr)
        per_image = [postprocess(scores[i], boxes[i], float(score_thr[i]), float(iou_thr[i]), self.max_detections)
                     for i in range(count)]
        outputs = pack(per_image, scales, sizes, self.max_detections)
        return [pb_utils.Tensor(t.name, value) for t, value in zip(C.ENSEMBLE_OUTPUTS, outputs)]

    def execute(self, requests):
        return respond_each(pb_utils, requests, self._one_request)
