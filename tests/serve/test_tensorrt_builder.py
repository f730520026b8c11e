"""TensorRT builder: option checks and calibration data, the one-line errors of a host that cannot build
(the real cuda-python says there is no GPU here), and the builder's calls in order through a stand-in for
TensorRT. That these calls exist in the pinned TensorRT is checked against its real bindings in
test_tensorrt_api.py; the build itself needs a GPU."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from damo_yolo.serving.tensorrt_builder import BuildOptions, CalibrationData, TensorRTUnavailable, build_engine


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
    (dict(precision="int8"), "int8 needs calibration data"),
])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BuildOptions(**{"input_size": (416, 416), **kwargs})


def test_int8_accepts_images_or_an_existing_cache(tmp_path, sample_images):
    BuildOptions(input_size=(416, 416), precision="int8", calibration_images=sample_images[0].parent)
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"cache")
    BuildOptions(input_size=(416, 416), precision="int8", calibration_cache=cache)


def test_calibration_batches_use_the_serving_preprocessing(tmp_path, sample_images):
    for image in sample_images:
        shutil.copy(image, tmp_path / image.name)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    data = CalibrationData(tmp_path, (320, 416), batch_size=3, max_batches=2)
    batches = list(data)
    assert len(batches) == len(data) == 2
    assert all(b.shape == (3, 3, 320, 416) and b.dtype == np.float32 for b in batches)
    assert 0 <= batches[0].min() and batches[0].max() <= 255 and batches[0].max() > 1  # 0–255, not 0–1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no calibration images"):
        CalibrationData(empty, (320, 416))


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

    class BuilderFlag:
        FP16, INT8 = "fp16", "int8"

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

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
                self.flags, self.profiles, self.int8_calibrator = set(), [], None

            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("workspace", pool, size))

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)

            def set_flag(self, flag):
                self.flags.add(flag)

            def set_calibration_profile(self, profile):
                fake.calls.append(("calibration_profile", profile.shapes))

            def create_timing_cache(self, blob):
                return Cache(blob)

            def set_timing_cache(self, cache, ignore_mismatch):
                fake.calls.append(("timing_cache", cache.blob))

        class Builder:
            def create_network(self, flags):
                assert flags == 0, "TensorRT 10 networks need no creation flag"
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
                return data.startswith(b"onnx")

        return Parser()


class _HostMemoryCUDA:
    """Stands for the CUDA runtime in the calibration test: "device" buffers are host buffers."""

    class cudaMemcpyKind:  # noqa: N801 (the CUDA API's name)
        cudaMemcpyHostToDevice = 1

    def __init__(self):
        self.buffers = {}

    def cudaMalloc(self, size):  # noqa: N802
        buf = np.zeros(size, np.uint8)
        self.buffers[buf.ctypes.data] = buf
        return 0, buf.ctypes.data

    def cudaMemcpy(self, dst, src, size, kind):  # noqa: N802
        import ctypes
        ctypes.memmove(dst, src, size)
        return (0,)

    def cudaFree(self, ptr):  # noqa: N802
        self.buffers.pop(ptr, None)
        return (0,)


@pytest.fixture()
def fake_trt(monkeypatch):
    from damo_yolo.serving import tensorrt_builder
    fake = _FakeTensorRT()
    fake.cuda = _HostMemoryCUDA()
    monkeypatch.setattr(tensorrt_builder, "import_tensorrt", lambda: fake)
    monkeypatch.setattr(tensorrt_builder, "gpu_info", lambda device=0: tensorrt_builder.GPUInfo("stand-in", (8, 9)))
    monkeypatch.setattr(tensorrt_builder, "_cudart", lambda: fake.cuda)
    return fake


def test_options_reach_the_builder(tmp_path, fake_trt):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"onnx graph")
    timing = tmp_path / "timing.cache"
    timing.write_bytes(b"old")
    opts = BuildOptions(input_size=(320, 416), precision="fp16", min_batch=1, opt_batch=2, max_batch=16,
                        workspace_gib=1.5, timing_cache=timing)
    plan = build_engine(onnx_path, tmp_path / "model.plan", opts)
    assert plan.read_bytes() == b"PLAN"
    assert ("workspace", "workspace", int(1.5 * (1 << 30))) in fake_trt.calls
    assert ("timing_cache", b"old") in fake_trt.calls and timing.read_bytes() == b"timing:old"
    assert fake_trt.config.flags == {"fp16"}
    assert fake_trt.config.profiles[0].shapes["images"] == ((1, 3, 320, 416), (2, 3, 320, 416), (16, 3, 320, 416))


def test_int8_calibrates_on_images_and_writes_the_cache(tmp_path, fake_trt, sample_images):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"onnx graph")
    opts = BuildOptions(input_size=(128, 160), precision="int8", calibration_images=sample_images[0].parent,
                        calibration_cache=tmp_path / "calib.cache", calibration_batch_size=2, calibration_batches=2)
    build_engine(onnx_path, tmp_path / "model.plan", opts)
    assert fake_trt.config.flags == {"fp16", "int8"}
    calibrator = fake_trt.config.int8_calibrator
    assert calibrator.get_batch_size() == 2 and calibrator.read_calibration_cache() is None
    want = list(CalibrationData(sample_images[0].parent, (128, 160), batch_size=2, max_batches=2))
    for batch in want:  # each batch lands in the one device buffer, as float32 NCHW
        (ptr,) = calibrator.get_batch(["images"])
        np.testing.assert_array_equal(fake_trt.cuda.buffers[ptr].view(np.float32).reshape(batch.shape), batch)
    assert calibrator.get_batch(["images"]) is None
    calibrator.write_calibration_cache(b"scales")
    assert (tmp_path / "calib.cache").read_bytes() == b"scales" and calibrator.read_calibration_cache() == b"scales"
    assert ("calibration_profile", {"images": ((2, 3, 128, 160),) * 3}) in fake_trt.calls


def test_unparsable_onnx_is_reported(tmp_path, fake_trt):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="TensorRT cannot parse"):
        build_engine(bad, tmp_path / "model.plan", BuildOptions(input_size=(320, 320)))
