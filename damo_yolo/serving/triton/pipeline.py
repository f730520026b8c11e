"""Triton python backend, CPU target: the whole detection in one model (damo_yolo.serving.cpu_pipeline) —
decode + resize, the detector's ONNX graph in onnxruntime or OpenVINO, score filter + NMS + top-K, boxes in
original pixels.

Inputs:  IMAGE BYTES [1] (one encoded image per batch item) or PIXELS UINT8 [H, W, 3] (one decoded BGR image per
         batch item: a client's video frame), SCORE_THRESHOLD / IOU_THRESHOLD FP32 [1] (optional: the
         repository's defaults otherwise)
Outputs: num_detections INT32 [1]; boxes FP32 [K, 4] (x1, y1, x2, y2, original pixels, clipped); scores FP32 [K];
         classes INT32 [K] — padded to K rows, the first num_detections are valid. (names: damo_yolo.contract)
A bad image or threshold gets that request's own 400; a request its client cancelled (gRPC timeout or
cancel) before the detector ran is answered CANCELLED without running it.
"""
import json
from pathlib import Path
from typing import Hashable, Union

import triton_python_backend_utils as pb_utils

from damo_yolo import contract as C
from damo_yolo.serving.cpu_pipeline import Cancelled, CpuPipeline, int8_warning
from damo_yolo.serving.triton.common import ErrorCounter, client_error, optional_input, serving_config


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        # every instance's detector may use every core the pod is given (threads 0: its CPU limit, not the node's
        # count): at low load one request gets them all; under load the instances overlap one batch's decode and
        # NMS with another's detector (idle threads sleep, not spin)
        serving = serving_config(args)
        self.pipeline = CpuPipeline(Path(args["model_repository"]) / args["model_version"] / serving.model_file,
                                    serving, max(1, int(config.get("max_batch_size", 1))))
        detector = self.pipeline.detector
        pb_utils.Logger.log_info(f"{args['model_instance_name']}: the detector runs on {detector.name} "
                                 f"{detector.version} ({serving.precision} graph, inference precision "
                                 f"{detector.precision})")
        warning = int8_warning(serving)
        if warning:
            pb_utils.Logger.log_warn(f"{args['model_instance_name']}: {warning}")
        self.errors = ErrorCounter(pb_utils, args)

    def finalize(self):
        self.pipeline.close()

    def _parse(self, request):
        encoded = pb_utils.get_input_tensor_by_name(request, C.IMAGE.name)
        pixels = pb_utils.get_input_tensor_by_name(request, C.PIXELS.name)
        if (encoded is None) == (pixels is None):
            raise ValueError(f"give each request {C.IMAGE.name} (encoded images) or {C.PIXELS.name} (BGR uint8 "
                             f"[H, W, 3] each), one of them")
        images = list(pixels.as_numpy()) if pixels is not None else encoded.as_numpy().reshape(-1)
        if len(images) == 0:
            raise ValueError("the request holds no image")
        count = len(images)
        score = optional_input(pb_utils, request, C.SCORE_THRESHOLD.name, self.pipeline.serving.score_threshold,
                               count)
        iou = optional_input(pb_utils, request, C.IOU_THRESHOLD.name, self.pipeline.serving.iou_threshold, count)
        return (images, *self.pipeline.thresholds(count, score, iou))

    def execute(self, requests):
        results: dict[Hashable, Union[tuple, Exception]] = {}
        items: dict[Hashable, tuple] = {}
        for r, request in enumerate(requests):  # (Triton itself drops requests cancelled while queued)
            try:
                items[r] = self._parse(request)
            except ValueError as exc:
                results[r] = exc
        if items:
            results.update(self.pipeline.run(items, cancelled=lambda r: requests[r].is_cancelled()))
        responses = []
        for r in range(len(requests)):
            result = results[r]
            if isinstance(result, Cancelled):
                error = pb_utils.TritonError(str(result), pb_utils.TritonError.CANCELLED)
                self.errors.count("cancelled")
            elif isinstance(result, ValueError):
                error = client_error(pb_utils, str(result))
                self.errors.count("invalid_input")
            elif isinstance(result, Exception):  # not the request's fault: an internal error
                error = pb_utils.TritonError(str(result))
            else:
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor(t.name, value) for t, value in zip(C.ENSEMBLE_OUTPUTS, result)]))
                continue
            responses.append(pb_utils.InferenceResponse(error=error))
        return responses
