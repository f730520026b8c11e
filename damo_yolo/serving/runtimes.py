"""The CPU target's detector runtimes: the detector's ONNX graph (FP32 or Q/DQ INT8) run by onnxruntime or by
Intel's OpenVINO, each with the threads the pod's CPU limit gives (``ServingConfig.runtime``; ``damo-export
--cpu-runtime``). Both take a float32 batch [n, 3, H, W] and return the graph's (scores, boxes).

- onnxruntime — the default: the CPU execution provider, every graph optimisation, idle threads sleeping (decoding
  and NMS share the cores) unless ``allow_spinning``.
- OpenVINO — compiled for the CPU plugin with one stream for latency and its default inference precision: bfloat16
  on CPUs with AVX-512 BF16 or AMX, float32 elsewhere (``precision`` says which it chose on this CPU); Q/DQ graphs
  run as INT8.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from damo_yolo import contract as C

RUNTIMES = C.RUNTIMES


class OnnxRuntimeDetector:
    name = "onnxruntime"

    def __init__(self, onnx_path: Union[str, Path], threads: int, allow_spinning: bool = False):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.precision = "as the graph: float32, Q/DQ in int8"
        self.version = ort.__version__

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, boxes = self.session.run([C.MODEL_SCORES.name, C.MODEL_BOXES.name], {C.MODEL_INPUT.name: batch})
        return scores, boxes


class OpenVinoDetector:
    name = "openvino"

    def __init__(self, onnx_path: Union[str, Path], threads: int):
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeError("this repository's detector runs on OpenVINO (runtime openvino), which is not "
                               "installed: pip install 'damo-yolo[openvino]'") from None
        core = ov.Core()
        # not pinned to cores: the pod's other instance and other pods on the node share them
        self.compiled = core.compile_model(str(onnx_path), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False})
        self.request = self.compiled.create_infer_request()
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # bf16 or f32
        self.version = ov.__version__

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One call at a time (the infer request is this detector's; a model instance executes serially)."""
        self.request.infer({C.MODEL_INPUT.name: batch})
        # copies: the request's buffers are reused by the next call
        return (np.array(self.request.get_tensor(C.MODEL_SCORES.name).data),
                np.array(self.request.get_tensor(C.MODEL_BOXES.name).data))


def build_detector(onnx_path: Union[str, Path], runtime: str, threads: int, allow_spinning: bool = False):
    """The detector of a CPU repository on ``runtime`` (RUNTIMES)."""
    if runtime == "openvino":
        return OpenVinoDetector(onnx_path, threads)
    if runtime == "onnxruntime":
        return OnnxRuntimeDetector(onnx_path, threads, allow_spinning)
    raise ValueError(f"unknown runtime {runtime!r}: choose {' or '.join(RUNTIMES)}")
