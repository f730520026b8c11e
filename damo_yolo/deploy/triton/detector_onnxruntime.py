"""Triton python backend: the detector's ONNX graph in onnxruntime (the CPU target).

Inputs:  images  FP32 [3, H, W]
Outputs: scores  FP32 [N, C]   sigmoid class probabilities
         boxes   FP32 [N, 4]   x1, y1, x2, y2 in input pixels
The names are the ONNX graph's (damo_yolo.contract), as a TensorRT plan's on the GPU target.
All requests of one dynamic batch run through the session together.
"""
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from damo_yolo import contract as C
from damo_yolo.deploy.triton.common import model_parameters


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = model_parameters(args)
        instances = sum(g.get("count", 1) for g in config.get("instance_group", [])) or 1
        threads = int(params.get("intra_op_threads", "0")) or max(1, (os.cpu_count() or 1) // instances)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # idle threads sleep instead of spinning: the other steps of the ensemble share these cores
        options.add_session_config_entry("session.intra_op.allow_spinning", params.get("allow_spinning", "0"))
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = Path(args["model_repository"]) / args["model_version"] / params.get("onnx_file", "model.onnx")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        batches = [pb_utils.get_input_tensor_by_name(r, C.MODEL_INPUT.name).as_numpy() for r in requests]
        scores, boxes = self.session.run([C.MODEL_SCORES.name, C.MODEL_BOXES.name],
                                         {C.MODEL_INPUT.name: np.concatenate(batches)})
        responses, start = [], 0
        for batch in batches:
            end = start + batch.shape[0]
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(C.MODEL_SCORES.name, scores[start:end]),
                pb_utils.Tensor(C.MODEL_BOXES.name, boxes[start:end])]))
            start = end
        return responses
