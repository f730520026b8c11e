"""TensorRT plans from the exported ONNX graphs, through the ``tensorrt`` Python API (GPU hosts only).

Written against TensorRT 11 (``platform.TENSORRT``, the serving container's): networks are strongly typed
(``NetworkDefinitionCreationFlag.STRONGLY_TYPED``), so each layer runs in the type the ONNX graph gives it and
no precision flag exists — FP16 plans are built from an FP16 graph (damo_yolo.serving.fp16), INT8 plans from
a Q/DQ graph (damo_yolo.serving.quantize, calibrated on the CPU; its unquantized layers stay FP32), FP32 plans
from the FP32 graph. The graph must carry the precision asked for (checked before TensorRT is touched). One
optimisation profile over the batch range, a workspace limit and a timing cache reused across builds. The GPU
is found through CUDA (cuda-python), never through torch. Without TensorRT, with another TensorRT version or
without a GPU, :func:`build_engine` stops with a one-line :class:`TensorRTUnavailable`; the option handling and
the precision check are plain Python and run anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..fileio import atomic_write_bytes
from . import platform
from .onnx_export import INPUT_NAME

PRECISIONS = ("fp32", "fp16", "int8")
GRAPH_OF = {"fp32": "build it from the FP32 detector graph (damo_yolo.serving.onnx_export)",
            "fp16": "convert the graph first (damo_yolo.serving.fp16.to_fp16)",
            "int8": "build it from a Q/DQ graph (damo_yolo.serving.quantize)"}


NO_DRIVER_ERRORS = ("cudaErrorInsufficientDriver", "cudaErrorNoDevice")  # the CUDA runtime's words for "no GPU"


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
    except TensorRTUnavailable as exc:  # CUDA 13's runtime answers a host without a driver with an error code
        if any(code in str(exc) for code in NO_DRIVER_ERRORS):
            raise TensorRTUnavailable(f"no NVIDIA GPU is visible: {str(exc).split(': ')[-1]} (no NVIDIA driver or "
                                      f"device on this host); TensorRT plans are built on the GPU they will run "
                                      f"on") from exc
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

    @property
    def workspace_bytes(self) -> int:
        return int(self.workspace_gib * (1 << 30))

    def profile_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        h, w = self.input_size
        return (self.min_batch, 3, h, w), (self.opt_batch, 3, h, w), (self.max_batch, 3, h, w)


def import_tensorrt():
    """The ``tensorrt`` module of the pinned version; TensorRTUnavailable (one line) otherwise."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(f"TensorRT is not installed: build plans on a GPU host with `pip install "
                                  f"'.[gpu]'` ({platform.TENSORRT_PACKAGE}=={platform.TENSORRT}) or inside "
                                  f"{platform.CONTAINER}") from exc
    installed = getattr(trt, "__version__", "")
    if platform.release(installed) != platform.release(platform.TENSORRT):
        raise TensorRTUnavailable(f"TensorRT {installed or '(unknown version)'} is installed, but plans must be "
                                  f"built with {platform.TENSORRT}, the TensorRT of {platform.CONTAINER} that "
                                  f"serves them (a plan only loads in the TensorRT that built it)")
    return trt


def build_engine(onnx_path: Union[str, Path], plan_path: Union[str, Path], options: BuildOptions) -> Path:
    """Parse ``onnx_path``, build a serialized engine with ``options`` and write it to ``plan_path``. An INT8
    plan is built from a Q/DQ ONNX (``damo_yolo.serving.quantize.quantize_onnx``)."""
    from .fp16 import graph_precision
    carried = graph_precision(onnx_path)
    if carried is not None and carried != options.precision:  # a strongly typed network runs in its types
        raise ValueError(f"{onnx_path} is an {carried.upper()} graph, but an {options.precision.upper()} plan was "
                         f"asked: {GRAPH_OF[options.precision]}")
    trt = import_tensorrt()
    gpu_info()  # a GPU the serving container supports, before any TensorRT work
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")  # EfficientNMS_TRT for the end2end graph
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *options.profile_shapes())
    config.add_optimization_profile(profile)
    cache = None
    if options.timing_cache is not None:
        blob = Path(options.timing_cache).read_bytes() if Path(options.timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} (see the log above)")
    if cache is not None and options.timing_cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(cache.serialize()))
    return atomic_write_bytes(plan_path, bytes(plan))
