"""TensorRT builder: option checks, INT8 only from a Q/DQ graph, the one-line errors of a host that cannot build
(the real cuda-python says there is no GPU here), and the builder's calls in order through a stand-in for
TensorRT. That these calls exist in the pinned TensorRT is checked against its real bindings in
test_tensorrt_api.py; the build itself needs a GPU."""
from __future__ import annotations

import numpy as np
import pytest

from damo_yolo.serving.tensorrt_builder import BuildOptions, TensorRTUnavailable, build_engine


def test_defaults_and_profile_shapes():
    opts = BuildOptions(input_size=(416, 416))
    assert opts.precision == "fp16" and opts.workspace_bytes == 2 << 30
    assert opts.profile_shapes() == ((1, 3, 416, 416), (4, 3, 416, 416), (8, 3, 416, 416))


@pytest.mark.parametrize("kwargs,match", [
    (dict(precision="int4"), "unknown precision 'int4'"),
    (dict(input_size=(400, 416)), "multiples of 32"),
    (dict(min_batch=4, opt_batch=2), "1 <= min <= opt <= max"),
    (dict(max_batch=0, min_batch=0, opt_batch=0), "1 <= min <= opt <= max"),
    (dict(workspace_gib=0), "workspace_gib must be positive"),
])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BuildOptions(**{"input_size": (416, 416), **kwargs})


def test_build_without_a_gpu_says_what_is_missing(tmp_path):
    from damo_yolo.serving.tensorrt_builder import gpu_info
    try:
        gpu_info()
        pytest.skip("this host has a GPU: the real build is covered by the GPU tests")
    except TensorRTUnavailable as exc:  # the real CUDA runtime (cuda-python) looked and found none
        assert "no NVIDIA GPU is visible" in str(exc) and "\n" not in str(exc)
    with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed|no NVIDIA GPU"):
        build_engine(tmp_path / "model.onnx", tmp_path / "model.plan", BuildOptions(input_size=(416, 416)))


def test_another_tensorrt_version_is_refused_in_one_line(monkeypatch):
    import sys
    import types

    from damo_yolo.serving import platform
    from damo_yolo.serving.tensorrt_builder import import_tensorrt
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="11.4.0.106"))
    with pytest.raises(TensorRTUnavailable) as err:
        import_tensorrt()
    assert f"TensorRT 11.4.0.106 is installed, but plans must be built with {platform.TENSORRT}" in str(err.value)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=platform.TENSORRT))
    assert import_tensorrt().__version__ == platform.TENSORRT


def test_export_for_the_gpu_on_this_host_ends_in_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-m", "damo_yolo.tools.export",
                          str(root / "demo" / "model" / "damoyolo_tinynasL18_Ns_synthetic.pth"), "--target", "gpu",
                          "--out", str(tmp_path / "repo")], capture_output=True, text=True, timeout=300)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert "TensorRT is not installed" in lines[0] or "no NVIDIA GPU" in lines[0]


class _FakeTensorRT:
    """Records what build_engine asks of the tensorrt API (the real one needs a GPU)."""

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 1

    def __init__(self):
        self.calls = []

    def init_libnvinfer_plugins(self, logger, namespace):
        self.calls.append(("plugins", namespace))

    def Builder(self, logger):  # noqa: N802 (the tensorrt API's name)
        fake = self

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, *shapes):
                self.shapes[name] = shapes

        class Cache:
            def __init__(self, blob):
                self.blob = blob

            def serialize(self):
                return b"timing:" + self.blob

        class Config:
            def __init__(self):
                self.flags, self.profiles = set(), []

            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("workspace", pool, size))

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)

            def set_flag(self, flag):
                self.flags.add(flag)

            def create_timing_cache(self, blob):
                return Cache(blob)

            def set_timing_cache(self, cache, ignore_mismatch):
                fake.calls.append(("timing_cache", cache.blob))

        class Builder:
            def create_network(self, flags):
                fake.calls.append(("network", flags))
                return "network"

            def create_optimization_profile(self):
                return Profile()

            def create_builder_config(self):
                fake.config = Config()
                return fake.config

            def build_serialized_network(self, network, config):
                return b"PLAN"

        return Builder()

    def OnnxParser(self, network, logger):  # noqa: N802
        class Parser:
            num_errors = 0

            def parse(self, data):
                return data != b"garbage"

        return Parser()


def _tiny_onnx(path, quantized: bool = False, precision: str = "fp32"):
    """A one-Conv ONNX graph, with Q/DQ on its input when ``quantized`` (explicit quantization), or converted to FP16
    (damo_yolo.serving.fp16) for ``precision="fp16"``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    nodes, inits, conv_in, conv_w = [], [w], "images", "w"
    if quantized:
        inits += [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["images", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        conv_in = "dq"
    nodes.append(helper.make_node("Conv", [conv_in, conv_w], ["out"]))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    if precision == "fp16":
        from damo_yolo.serving.fp16 import to_fp16
        return to_fp16(path, path)
    return path


@pytest.fixture()
def fake_trt(monkeypatch):
    from damo_yolo.serving import tensorrt_builder
    fake = _FakeTensorRT()
    monkeypatch.setattr(tensorrt_builder, "import_tensorrt", lambda: fake)
    monkeypatch.setattr(tensorrt_builder, "gpu_info", lambda device=0: tensorrt_builder.GPUInfo("stand-in", (8, 9)))
    return fake


def test_options_reach_the_builder(tmp_path, fake_trt):
    onnx_path = _tiny_onnx(tmp_path / "m.onnx", precision="fp16")
    timing = tmp_path / "timing.cache"
    timing.write_bytes(b"old")
    opts = BuildOptions(input_size=(320, 416), precision="fp16", min_batch=1, opt_batch=2, max_batch=16,
                        workspace_gib=1.5, timing_cache=timing)
    plan = build_engine(onnx_path, tmp_path / "model.plan", opts)
    assert plan.read_bytes() == b"PLAN"
    assert ("workspace", "workspace", int(1.5 * (1 << 30))) in fake_trt.calls
    assert ("timing_cache", b"old") in fake_trt.calls and timing.read_bytes() == b"timing:old"
    assert ("network", 1 << 1) in fake_trt.calls and fake_trt.config.flags == set()  # strongly typed, no flags
    assert fake_trt.config.profiles[0].shapes["images"] == ((1, 3, 320, 416), (2, 3, 320, 416), (16, 3, 320, 416))


def test_int8_builds_from_the_q_dq_graph_with_no_calibrator(tmp_path, fake_trt):
    """Explicit quantization: the scales are in the graph; a strongly typed network needs no flag."""
    build_engine(_tiny_onnx(tmp_path / "q.onnx", quantized=True), tmp_path / "model.plan",
                 BuildOptions(input_size=(128, 160), precision="int8"))
    assert fake_trt.config.flags == set() and not hasattr(fake_trt.config, "int8_calibrator")


@pytest.mark.parametrize("graph,precision,said", [
    (dict(), "int8", "is an FP32 graph, but an INT8 plan was asked: build it from a Q/DQ graph"),
    (dict(), "fp16", "is an FP32 graph, but an FP16 plan was asked: convert the graph first"),
    (dict(quantized=True), "fp16", "is an INT8 graph, but an FP16 plan"),
    (dict(quantized=True), "fp32", "is an INT8 graph, but an FP32 plan"),
    (dict(precision="fp16"), "fp32", "is an FP16 graph, but an FP32 plan was asked: build it from the FP32")])
def test_precision_must_match_the_graph(tmp_path, fake_trt, graph, precision, said):
    """A strongly typed network runs in the graph's own types: the graph must carry the precision asked for."""
    with pytest.raises(ValueError, match=said):
        build_engine(_tiny_onnx(tmp_path / "m.onnx", **graph), tmp_path / "model.plan",
                     BuildOptions(input_size=(128, 160), precision=precision))


def test_unparsable_onnx_is_reported(tmp_path, fake_trt):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="TensorRT cannot parse"):
        build_engine(bad, tmp_path / "model.plan", BuildOptions(input_size=(320, 320)))
