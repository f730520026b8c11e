"""TensorRT plans from the exported ONNX graphs, through the ``tensorrt`` Python API (GPU hosts only).

Written against TensorRT 10.8 (``platform.TENSORRT``, the serving container's): networks are explicit-batch
by construction (no creation flag), FP16 through ``BuilderFlag.FP16``, INT8 through the entropy
calibrator that release still has (over a folder of images, with a calibration cache), one optimisation
profile over the batch range, a workspace limit and a timing cache reused across builds. The GPU is found
through CUDA (cuda-python), never through torch. Without TensorRT, with another TensorRT version or without
a GPU, :func:`build_engine` stops with a one-line :class:`TensorRTUnavailable`; the option handling and the
calibration data are plain Python and run anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from ..fileio import atomic_write_bytes
from . import platform
from .onnx_export import INPUT_NAME

PRECISIONS = ("fp32", "fp16", "int8")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class TensorRTUnavailable(RuntimeError):
    """TensorRT (of the pinned version) or a suitable NVIDIA GPU is missing on this host."""


@dataclass(frozen=True)
class GPUInfo:
    name: str
    compute_capability: tuple[int, int]
    device: int = 0


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise TensorRTUnavailable("cuda-python is not installed: pip install '.[gpu]' on the GPU host "
                                      "(it finds the GPU and holds INT8 calibration batches)") from exc
    return cudart


def _check(cudart, result, what: str):
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        name = cudart.cudaGetErrorName(err)[1]
        raise TensorRTUnavailable(f"{what} failed: {name.decode() if isinstance(name, bytes) else name}")
    return values[0] if len(values) == 1 else values


def gpu_info(device: int = 0) -> GPUInfo:
    """The NVIDIA GPU plans are built for (through the CUDA runtime); TensorRTUnavailable when there is none
    or it is older than the serving container supports."""
    cudart = _cudart()
    try:
        count = _check(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except TensorRTUnavailable:
        raise
    except RuntimeError as exc:  # no driver: cuda-python cannot load libcuda.so.1
        reason = ("the NVIDIA driver (libcuda.so.1) is not on this host" if "libcuda" in str(exc)
                  else str(exc).splitlines()[0])
        raise TensorRTUnavailable(f"no NVIDIA GPU is visible: {reason}; TensorRT plans are built on the GPU "
                                  f"they will run on") from exc
    if count < 1 or device >= count:
        raise TensorRTUnavailable(f"no NVIDIA GPU {device} is visible ({count} found)")
    props = _check(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    info = GPUInfo(name.strip("\x00 "), (int(props.major), int(props.minor)), device)
    if info.compute_capability < platform.MIN_COMPUTE_CAPABILITY:
        raise TensorRTUnavailable(
            f"{info.name} has compute capability {info.compute_capability[0]}.{info.compute_capability[1]}; "
            f"TensorRT {platform.TENSORRT} and {platform.CONTAINER} need "
            f"{platform.MIN_COMPUTE_CAPABILITY[0]}.{platform.MIN_COMPUTE_CAPABILITY[1]} or newer")
    return info


@dataclass(frozen=True)
class BuildOptions:
    input_size: tuple[int, int]  # (H, W) of the model input
    precision: str = "fp16"
    min_batch: int = 1
    opt_batch: int = 4
    max_batch: int = 8
    workspace_gib: float = 2.0
    timing_cache: Optional[Path] = None  # read if present, written after the build
    calibration_images: Optional[Path] = None  # int8: a folder of images like those served
    calibration_cache: Optional[Path] = None  # int8: reused when present (then images are optional)
    calibration_batches: int = 64
    calibration_batch_size: int = 8
    resize: str = "stretch"  # preprocessing of the calibration images, as at serving time

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        h, w = self.input_size
        if h % 32 or w % 32 or h <= 0 or w <= 0:
            raise ValueError(f"input size {h}x{w} must be positive multiples of 32")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"batch range must satisfy 1 <= min <= opt <= max, got "
                             f"{self.min_batch}/{self.opt_batch}/{self.max_batch}")
        if self.workspace_gib <= 0:
            raise ValueError(f"workspace_gib must be positive, got {self.workspace_gib}")
        if self.precision == "int8":
            has_cache = self.calibration_cache is not None and Path(self.calibration_cache).is_file()
            has_images = self.calibration_images is not None and Path(self.calibration_images).is_dir()
            if not (has_cache or has_images):
                raise ValueError("int8 needs calibration data: a folder of images (calibration_images) or an "
                                 "existing calibration cache (calibration_cache)")
            if self.calibration_batches < 1 or self.calibration_batch_size < 1:
                raise ValueError("calibration_batches and calibration_batch_size must be at least 1")

    @property
    def workspace_bytes(self) -> int:
        return int(self.workspace_gib * (1 << 30))

    def profile_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        h, w = self.input_size
        return (self.min_batch, 3, h, w), (self.opt_batch, 3, h, w), (self.max_batch, 3, h, w)


class CalibrationData:
    """Batches of preprocessed images (float32 NCHW, RGB 0–255, the serving preprocessing) for INT8."""

    def __init__(self, folder: Union[str, Path], input_size: tuple[int, int], batch_size: int = 8,
                 max_batches: int = 64, resize: str = "stretch"):
        self.files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"no calibration images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        self.input_size, self.batch_size, self.max_batches, self.resize = input_size, batch_size, max_batches, resize

    def __len__(self) -> int:
        return min(self.max_batches, len(self.files) // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        import cv2

        from ..data.preprocess import preprocess
        batch: list[np.ndarray] = []
        produced = 0
        for path in self.files:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                continue  # unreadable files do not stop calibration
            batch.append(preprocess(bgr, self.input_size, self.resize)[0])
            if len(batch) == self.batch_size:
                yield np.ascontiguousarray(np.stack(batch))
                batch, produced = [], produced + 1
                if produced >= self.max_batches:
                    return


def _make_calibrator(trt, data: Optional[CalibrationData], cache: Optional[Path], batch_size: int):
    cudart = _cudart()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds calibration batches from device memory (cudaMalloc'd once, copied into per batch)."""

        def __init__(self):
            super().__init__()
            self.batches = iter(data) if data is not None else iter(())
            self.device_ptr, self.nbytes = None, 0

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names):
            batch = next(self.batches, None)
            if batch is None:
                return None
            if self.device_ptr is None:
                self.nbytes = batch.nbytes
                self.device_ptr = _check(cudart, cudart.cudaMalloc(self.nbytes), "cudaMalloc")
            _check(cudart, cudart.cudaMemcpy(self.device_ptr, batch.ctypes.data, batch.nbytes,
                                             cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")
            return [int(self.device_ptr)]

        def read_calibration_cache(self):
            return Path(cache).read_bytes() if cache is not None and Path(cache).is_file() else None

        def write_calibration_cache(self, blob) -> None:
            if cache is not None:
                atomic_write_bytes(cache, bytes(blob))

        def __del__(self):
            if self.device_ptr is not None:
                cudart.cudaFree(self.device_ptr)

    return EntropyCalibrator()


def import_tensorrt():
    """The ``tensorrt`` module of the pinned version; TensorRTUnavailable (one line) otherwise."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(f"TensorRT is not installed: build plans on a GPU host with `pip install "
                                  f"'.[gpu]'` (tensorrt-cu12=={platform.TENSORRT}) or inside "
                                  f"{platform.CONTAINER}") from exc
    installed = getattr(trt, "__version__", "")
    if platform.release(installed) != platform.release(platform.TENSORRT):
        raise TensorRTUnavailable(f"TensorRT {installed or '(unknown version)'} is installed, but plans must be "
                                  f"built with {platform.TENSORRT}, the TensorRT of {platform.CONTAINER} that "
                                  f"serves them (a plan only loads in the TensorRT that built it)")
    return trt


def build_engine(onnx_path: Union[str, Path], plan_path: Union[str, Path], options: BuildOptions) -> Path:
    """Parse ``onnx_path``, build a serialized engine with ``options`` and write it to ``plan_path``."""
    trt = import_tensorrt()
    gpu_info()  # a GPU the serving container supports, before any TensorRT work
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")  # EfficientNMS_TRT for the end2end graph
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: every network is explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *options.profile_shapes())
    config.add_optimization_profile(profile)
    if options.precision in ("fp16", "int8"):  # every GPU of compute capability >= 7.5 has fast FP16
        config.set_flag(trt.BuilderFlag.FP16)
    if options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        data = (CalibrationData(options.calibration_images, options.input_size, options.calibration_batch_size,
                                options.calibration_batches, options.resize)
                if options.calibration_images else None)
        config.int8_calibrator = _make_calibrator(trt, data, options.calibration_cache,
                                                  options.calibration_batch_size)
        calib_shape = (options.calibration_batch_size, 3, *options.input_size)
        calib_profile = builder.create_optimization_profile()
        calib_profile.set_shape(INPUT_NAME, calib_shape, calib_shape, calib_shape)
        config.set_calibration_profile(calib_profile)
    cache = None
    if options.timing_cache is not None:
        blob = Path(options.timing_cache).read_bytes() if Path(options.timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} (see the log above)")
    if cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(cache.serialize()))
    return atomic_write_bytes(plan_path, bytes(plan))
