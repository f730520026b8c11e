"""Triton python backend: score filter, class-aware NMS, top-k, boxes mapped back to the original image.

Inputs:  raw_scores FP32 [N, C], raw_boxes FP32 [N, 4], SCALE FP32 [2], ORIG_SIZE INT32 [2],
         SCORE_THRESHOLD FP32 [1] and IOU_THRESHOLD FP32 [1] (optional: the export's defaults otherwise)
Outputs: num_detections INT32 [1]; boxes FP32 [K, 4] (x1, y1, x2, y2, original pixels, clipped);
         scores FP32 [K]; classes INT32 [K] — padded to K rows, the first num_detections are valid.
(names and types: damo_yolo.contract)
"""
import numpy as np
import triton_python_backend_utils as pb_utils

from damo_yolo import contract as C
from damo_yolo.data.preprocess import ResizeInfo
from damo_yolo.deploy.triton.common import client_error, model_parameters
from damo_yolo.postprocess import postprocess


def _optional(request, name, default, count):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return np.full(count, default, np.float32)
    return tensor.as_numpy().reshape(-1).astype(np.float32)


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        self.score_threshold = float(params["score_threshold"])
        self.iou_threshold = float(params["iou_threshold"])
        self.max_detections = int(params["max_detections"])

    def _one_request(self, request):
        scores, boxes, scales, sizes = (pb_utils.get_input_tensor_by_name(request, t.name).as_numpy()
                                        for t in (C.RAW_SCORES, C.RAW_BOXES, C.SCALE, C.ORIG_SIZE))
        count, k = scores.shape[0], self.max_detections
        score_thr = _optional(request, C.SCORE_THRESHOLD.name, self.score_threshold, count)
        iou_thr = _optional(request, C.IOU_THRESHOLD.name, self.iou_threshold, count)
        if np.any((score_thr < 0) | (score_thr >= 1)) or np.any((iou_thr <= 0) | (iou_thr > 1)):
            raise ValueError("SCORE_THRESHOLD must be in [0, 1) and IOU_THRESHOLD in (0, 1]")
        num = np.zeros((count, 1), np.int32)
        out_boxes = np.zeros((count, k, 4), np.float32)
        out_scores = np.zeros((count, k), np.float32)
        out_classes = np.zeros((count, k), np.int32)
        for i in range(count):
            det_boxes, det_scores, det_classes = postprocess(scores[i], boxes[i], float(score_thr[i]),
                                                             float(iou_thr[i]), k)
            info = ResizeInfo(int(sizes[i][0]), int(sizes[i][1]), float(scales[i][0]), float(scales[i][1]))
            n = len(det_scores)
            num[i, 0] = n
            out_boxes[i, :n] = info.to_original(det_boxes)
            out_scores[i, :n] = det_scores
            out_classes[i, :n] = det_classes
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(t.name, value) for t, value in zip(C.ENSEMBLE_OUTPUTS, (num, out_boxes, out_scores,
                                                                                     out_classes))])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._one_request(request))
            except ValueError as exc:
                responses.append(pb_utils.InferenceResponse(error=client_error(pb_utils, str(exc))))
        return responses
