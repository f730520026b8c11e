"""TensorRT plans from the exported ONNX graphs, through the ``tensorrt`` Python API (GPU hosts only).

FP32 / FP16 / INT8 (entropy calibration over a folder of images, with a calibration cache), one
optimisation profile over the batch range, a workspace limit, and a timing cache reused across builds.
Without TensorRT or a GPU, :func:`build_engine` stops with a message saying what is missing; the option
handling and the calibration data are plain Python and run anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from ..fileio import atomic_write_bytes
from .onnx_export import INPUT_NAME

PRECISIONS = ("fp32", "fp16", "int8")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class TensorRTUnavailable(RuntimeError):
    """TensorRT or an NVIDIA GPU is missing on this host."""


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
    import torch  # device memory for the batches (torch is on every GPU host of this project)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.batches = iter(data) if data is not None else iter(())
            self.device_batch = None

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names):
            batch = next(self.batches, None)
            if batch is None:
                return None
            self.device_batch = torch.from_numpy(batch).cuda()
            return [int(self.device_batch.data_ptr())]

        def read_calibration_cache(self):
            return Path(cache).read_bytes() if cache is not None and Path(cache).is_file() else None

        def write_calibration_cache(self, blob) -> None:
            if cache is not None:
                atomic_write_bytes(cache, bytes(blob))

    return EntropyCalibrator()


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable("TensorRT is not installed: build plans on a GPU host with `pip install "
                                  ".[gpu]` or inside NVIDIA's TensorRT/Triton container") from exc
    try:
        import torch
        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        raise TensorRTUnavailable("no NVIDIA GPU is visible: TensorRT plans are built on the GPU they will run on")
    return trt


def build_engine(onnx_path: Union[str, Path], plan_path: Union[str, Path], options: BuildOptions) -> Path:
    """Parse ``onnx_path``, build a serialized engine with ``options`` and write it to ``plan_path``."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")  # EfficientNMS_TRT for the end2end graph
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *options.profile_shapes())
    config.add_optimization_profile(profile)
    if options.precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16:
            raise TensorRTUnavailable("this GPU has no fast FP16; build with precision fp32")
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
