"""The CPU target's detector runtimes: the detector's ONNX graph (FP32 or Q/DQ INT8) run by onnxruntime or by
Intel's OpenVINO, each with the threads the pod's CPU limit gives (``ServingConfig.runtime``; ``damo-export
--cpu-runtime``). Both take a float32 batch [n, 3, H, W] and return the graph's (scores, boxes).

- onnxruntime — the default: the CPU execution provider, every graph optimisation, idle threads sleeping (decoding
  and NMS share the cores) unless ``allow_spinning``.
- OpenVINO — compiled for the CPU plugin with one stream for latency and its default inference precision: bfloat16
  on CPUs with AVX-512 BF16 or AMX, float32 elsewhere (``precision`` says which it chose on this CPU); Q/DQ graphs
  run as INT8.

Which is faster depends on the model and the CPU (perf/results/cpu_int8.md: on a CPU with AVX-512 VNNI and AMX,
OpenVINO runs T's and S's INT8 graphs 1.6–2.2x faster than onnxruntime, Ns's SiLU network 1.8x slower), so an INT8
export measures both on its host and serves the faster (``choose_runtime``; ``damo-export --cpu-runtime auto``, the
INT8 default). FP32 stays on onnxruntime unless asked: OpenVINO's default precision would silently be bfloat16.
"""
from __future__ import annotations

import time
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


def installed_runtimes() -> tuple[str, ...]:
    """The RUNTIMES this Python can run (OpenVINO is an extra: ``damo-yolo[openvino]``)."""
    import importlib.util
    return tuple(r for r in RUNTIMES if r == "onnxruntime" or importlib.util.find_spec(r) is not None)


def choose_runtime(onnx_path: Union[str, Path], batch: np.ndarray, threads: int, runs: int = 15, warmup: int = 3,
                   fp32_path: Union[str, Path, None] = None) -> tuple[str, dict]:
    """The installed runtime that runs the detector ``onnx_path`` on ``batch`` fastest here: each compiled once,
    warmed up, then timed call by call in turn (so all see the same load) → (runtime, the record: median ms of
    each, the runs). With ``fp32_path`` (the FP32 graph of an INT8 one) that graph on onnxruntime is timed
    alongside, as ``fp32_onnxruntime_ms``: what the INT8 gains here."""
    detectors = {name: build_detector(onnx_path, name, threads) for name in installed_runtimes()}
    contenders = dict(detectors)
    if fp32_path is not None:
        contenders["fp32"] = build_detector(fp32_path, "onnxruntime", threads)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for i in range(warmup + runs):
        for name, detector in contenders.items():
            start = time.perf_counter()
            detector.run(batch)
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    medians = {name: round(float(np.median(times[name])), 2) for name in detectors}
    chosen = min(medians, key=medians.__getitem__)
    record = {"chosen": chosen, "median_ms": medians, "runs": runs, "batch": int(len(batch)), "threads": threads}
    if fp32_path is not None:
        record["fp32_onnxruntime_ms"] = round(float(np.median(times["fp32"])), 2)
    return chosen, record
