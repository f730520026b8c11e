"""`damo-export`: a checkpoint → a Triton model repository (`tritonserver --model-repository OUT`).

    damo-export work_dirs/x/best.pth --out triton_models
    damo-export damoyolo_tinynasL25_S.pth --variant S --out triton_models     # an official checkpoint
    damo-export best.pth --target gpu --precision fp16 --out triton_models   # on a GPU host (DALI preprocess)
    damo-export best.pth --target gpu --dali-decode cuda --out triton_models  # JPEGs on CUDA, no hardware decoder
    damo-export best.pth --preprocess dali --out triton_models               # CPU target, DALI CPU decoding
    damo-export best.pth --thresholds evaluation --out eval_models           # serve the checkpoint's mAP thresholds
    damo-export best.pth --precision int8 --calibration-images data/synthetic/train --out triton_models
                                              # INT8 (Q/DQ ONNX): onnxruntime on the CPU, the plan's source on a GPU

The project's checkpoints carry their variant, classes, input size and resize policy; official ones get
their variant's reference settings (the variant is recognised from the weights; ``--variant`` names it
when several fit). Exits 1 with a one-line reason on failure (``--verbose``: every mismatched key).
"""
from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

import click

from damo_yolo import contract as C
from damo_yolo.cli import CONTEXT, run
from damo_yolo.fileio import checkpoint_file_problem
from damo_yolo.tools.zoo import variant_option

THRESHOLD_SETS = ("serving", "evaluation")
TARGETS = ("cpu", "gpu")
PRECISIONS = {"cpu": ("fp32", "int8"), "gpu": ("fp32", "fp16", "int8")}
DEFAULT_PRECISION = {"cpu": "fp32", "gpu": "fp16"}
CPU_RUNTIMES = (*C.RUNTIMES, "auto")  # auto: the one that runs the detector faster on the export's host
# an INT8 detector slower than this fraction of its FP32 time gains nothing worth its accuracy: auto serves FP32
NO_GAIN = 0.95


@dataclass(frozen=True)
class ExportOptions:
    """How a checkpoint is exported (``damo-export``'s options); None: the default the docstring names."""
    target: str = "cpu"
    name: str = "damo_yolo"  # the model clients call
    variant: Optional[str] = None  # of an official checkpoint (recognised from its weights)
    # served defaults: "serving" (damo_yolo.contract's SERVING_*) or "evaluation" (the checkpoint's own, for mAP);
    # score_threshold / max_detections override either; the IoU is the checkpoint's unless given
    thresholds: str = "serving"
    score_threshold: Optional[float] = None
    iou_threshold: Optional[float] = None
    max_detections: Optional[int] = None
    precision: Optional[str] = None  # cpu: fp32 (default) or int8; gpu: fp16 (default), fp32 or int8
    calibration_images: Optional[Path] = None  # int8: images like those served
    validation: Optional[tuple[Path, Path]] = None  # int8 on cpu: (COCO annotations, images) the budget is kept on
    accuracy_budget: Optional[float] = None  # int8 with validation: mAP points INT8 may lose against FP32 (1)
    preprocess: Optional[str] = None  # opencv or dali (default: dali on gpu, opencv on cpu)
    # cpu: the detector's runtime, C.RUNTIMES, or "auto": the faster here (default: auto for int8, onnxruntime for fp32)
    cpu_runtime: Optional[str] = None
    reduce_range: Optional[bool] = None  # cpu int8: 7-bit weights, for CPUs without VNNI (default: this host's need)
    dali_decode: Optional[str] = None  # gpu: where DALI decodes JPEGs, C.DALI_DECODE_PATHS (auto); None on cpu
    max_batch_size: int = 8
    instances: Optional[int] = None  # CPU: instances of the one model (2); GPU: plan instances (1)
    dynamic_batching: bool = True
    max_queue_delay_us: int = 0
    max_pixels: int = C.MAX_PIXELS
    trusted: bool = False  # allow pickled Python objects in the checkpoint
    force: bool = False  # replace this export's models if the output folder holds them

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; choose {' or '.join(TARGETS)}")
        if self.thresholds not in THRESHOLD_SETS:
            raise ValueError(f"unknown thresholds {self.thresholds!r}; choose {' or '.join(THRESHOLD_SETS)}")
        object.__setattr__(self, "precision", self.precision or DEFAULT_PRECISION[self.target])
        object.__setattr__(self, "preprocess", self.preprocess or ("dali" if self.target == "gpu" else "opencv"))
        allowed = PRECISIONS[self.target]
        if self.precision not in allowed:
            raise ValueError(f"--precision {self.precision} is not served by the {self.target} target: choose "
                             f"{' or '.join(allowed)}")
        if self.precision == "int8":
            if self.calibration_images is None:
                raise ValueError("--precision int8 needs --calibration-images DIR: a folder of images like those "
                                 "served (its Q/DQ scales are calibrated on them)")
        if self.calibration_images is not None:  # (also timing images for --cpu-runtime auto)
            from damo_yolo.serving.quantize import check_calibration_folder
            if not Path(self.calibration_images).is_dir():
                raise ValueError(f"--calibration-images {self.calibration_images} is not a folder")
            try:
                check_calibration_folder(self.calibration_images)
            except ValueError as exc:
                raise ValueError(f"--calibration-images: {exc}") from None
        if self.validation is not None:
            annotations, images = (Path(v) for v in self.validation)
            if self.precision != "int8" or self.target != "cpu":
                raise ValueError("--validation measures an INT8 export of the cpu target against its FP32 (--precision "
                                 "int8): the GPU plan's agreement is scripts/gpu_smoke.sh's")
            if not annotations.is_file():
                raise ValueError(f"--validation: {annotations} is not a COCO annotations file")
            if not images.is_dir():
                raise ValueError(f"--validation: {images} is not a folder of images")
            object.__setattr__(self, "validation", (annotations, images))
        if self.accuracy_budget is not None and self.validation is None:
            raise ValueError("--accuracy-budget is kept on a validation set: give --validation ANNOTATIONS IMAGES")
        if self.validation is not None:
            object.__setattr__(self, "accuracy_budget", 1.0 if self.accuracy_budget is None else self.accuracy_budget)
        if self.accuracy_budget is not None and not 0 <= self.accuracy_budget <= 100:
            raise ValueError(f"--accuracy-budget {self.accuracy_budget:g}: mAP points, from 0 to 100")
        if self.target != "gpu" and self.dali_decode is not None:
            raise ValueError(f"--dali-decode {self.dali_decode} is for --target gpu (Triton's DALI backend): the "
                             f"{self.target} target decodes on the CPU")
        if self.target == "gpu":
            object.__setattr__(self, "dali_decode", self.dali_decode or "auto")
            if self.cpu_runtime is not None:
                raise ValueError(f"--cpu-runtime {self.cpu_runtime} is for --target cpu: the gpu target's detector "
                                 f"is a TensorRT plan")
        elif self.cpu_runtime not in (None, *CPU_RUNTIMES):
            raise ValueError(f"unknown --cpu-runtime {self.cpu_runtime!r}; choose {' or '.join(CPU_RUNTIMES)}")
        if self.reduce_range is not None and (self.target, self.precision) != ("cpu", "int8"):
            raise ValueError("--reduce-range/--no-reduce-range is for --precision int8 on the cpu target")
        if self.dali_decode not in (None, *C.DALI_DECODE_PATHS):
            raise ValueError(f"unknown --dali-decode {self.dali_decode!r}; choose {' or '.join(C.DALI_DECODE_PATHS)}")

    @property
    def runtime(self) -> Optional[str]:
        """The CPU target's runtime as asked, or its default: auto (measured) for INT8, onnxruntime for FP32."""
        if self.target != "cpu":
            return None
        return self.cpu_runtime or ("auto" if self.precision == "int8" else "onnxruntime")

    @property
    def int8_reduce_range(self) -> bool:
        """7-bit INT8 weights: as asked, else where this host (the likely serving CPU) has no VNNI."""
        if (self.target, self.precision) != ("cpu", "int8"):
            return False
        if self.reduce_range is None:
            from damo_yolo.serving.resources import has_int8_dot_product
            return not has_int8_dot_product()
        return self.reduce_range

    def serving_config(self, meta) -> C.ServingConfig:
        """What the repository serves, from the checkpoint's metadata and these options."""
        serving = self.thresholds == "serving"
        score = self.score_threshold
        if score is None:
            score = C.SERVING_SCORE_THRESHOLD if serving else meta.score_threshold
        k = self.max_detections
        if k is None:
            k = C.SERVING_MAX_DETECTIONS if serving else meta.max_detections
        return C.ServingConfig(
            input_size=meta.input_size, class_names=meta.class_names, score_threshold=score,
            iou_threshold=meta.iou_threshold if self.iou_threshold is None else self.iou_threshold,
            max_detections=k, resize=meta.resize, pad_value=meta.pad_value, precision=self.precision,
            decoder=self.preprocess, dali_decode=self.dali_decode or "auto", max_pixels=self.max_pixels,
            runtime=self.runtime if self.runtime in C.RUNTIMES else "onnxruntime",  # auto: chosen at export
            reduce_range=self.int8_reduce_range,
            # GPU: the plan's NMS keeps what the checkpoint's evaluation would, so requests may go as low
            plan_score_threshold=min(meta.score_threshold, score) if self.target == "gpu" else None)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class RepositoryExists(ValueError):
    """The output folder already holds models this export would replace."""


def check_out(out: Path, name: str, force: bool = False) -> None:
    """Refuse to replace models of an existing repository unless ``force``; other models are left alone."""
    if out.exists() and not out.is_dir():
        raise RepositoryExists(f"--out {out} is a file, not a folder")
    from damo_yolo.serving.repository import step_names
    existing = [n for n in (name, *step_names(name).values()) if (out / n).exists()]
    if existing and not force:
        raise RepositoryExists(f"{out} already holds {', '.join(existing)}: pass --force to replace them, "
                               f"or choose another --out (or --name)")


def check_gpu_host():
    """The GPU target's tools, before any work: TensorRT of the pinned version, an NVIDIA GPU the serving
    container supports and its DALI. Returns ``(tensorrt, GPUInfo)``; TensorRTUnavailable or ValueError
    (one line) otherwise."""
    from damo_yolo.serving import platform
    from damo_yolo.serving.tensorrt_builder import gpu_info, import_tensorrt
    trt, gpu = import_tensorrt(), gpu_info()
    try:
        from nvidia.dali import __version__ as dali_version
    except ImportError:
        raise ValueError(f"NVIDIA DALI is not installed: pip install '.[gpu]' (DALI {platform.DALI})") from None
    if platform.dali_mismatch(dali_version):
        raise ValueError(platform.dali_mismatch(dali_version))
    return trt, gpu


Progress = Callable[[str], None]  # told each step as it starts, e.g. "exporting ONNX ..."


def _silent(step: str) -> None:
    pass


def export_repository(checkpoint: Path, out: Path, options: Optional[ExportOptions] = None,
                      progress: Optional[Progress] = None, **changes) -> Path:
    """Export ``checkpoint`` into the model repository ``out`` (refuses to replace its models unless
    ``force``): ``options``, with ``changes`` (ExportOptions' fields by keyword) applied. ``progress`` is
    told each step as it starts (damo-export prints them)."""
    options = replace(options or ExportOptions(), **changes)
    progress = progress or _silent
    check_out(Path(out), options.name, options.force)
    if options.target == "gpu":
        check_gpu_host()  # a CPU host is told before minutes of work
    progress(f"loading the checkpoint {checkpoint}")
    import onnx
    import onnxruntime
    import torch

    from damo_yolo import __version__
    from damo_yolo.models import load_model
    from damo_yolo.serving.onnx_export import export_onnx
    from damo_yolo.serving.repository import RepositorySpec

    model, meta = load_model(checkpoint, options.variant, trusted=options.trusted)
    serving = options.serving_config(meta)
    instances = {} if options.instances is None else {
        "cpu_instances" if options.target == "cpu" else "detector_instances": options.instances}
    spec = RepositorySpec(
        serving, name=options.name, target=options.target, max_batch_size=options.max_batch_size,
        dynamic_batching=options.dynamic_batching, max_queue_delay_us=options.max_queue_delay_us, **instances,
        extra={"checkpoint": Path(checkpoint).name, "checkpoint_sha256": _sha256(Path(checkpoint)),
               "variant": meta.variant,
               # the checkpoint's evaluation thresholds: damo-client evaluate --thresholds evaluation sends them
               "evaluation": {"score_threshold": meta.score_threshold, "iou_threshold": meta.iou_threshold},
               "versions": {"damo_yolo": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                            "onnxruntime": onnxruntime.__version__},
               "train_metrics": meta.metrics})
    h, w = serving.input_size
    num_priors = sum((h // s) * (w // s) for s in model.cfg.strides)
    with tempfile.TemporaryDirectory() as tmp:
        progress(f"exporting ONNX: DAMO-YOLO-{meta.variant}, {len(serving.class_names)} classes, {h}x{w}")
        onnx_path = export_onnx(model, Path(tmp) / C.MODEL_FILE, input_size=(h, w))
        if serving.precision == "int8":
            from damo_yolo.serving.quantize import (
                TARGET_LAYOUT,
                Quantizer,
                quantization_record,
                quantize_within_budget,
            )
            layout = TARGET_LAYOUT[options.target]
            progress(f"quantizing to INT8 for {layout}, calibrated on {options.calibration_images}"
                     + (" (7-bit weights: --reduce-range)" if serving.reduce_range else ""))
            assert options.calibration_images is not None  # ExportOptions requires them for int8
            quantizer = Quantizer(onnx_path, options.calibration_images, (h, w), serving.resize, serving.pad_value,
                                  layout=layout, workdir=Path(tmp) / "quantize",
                                  reduce_range=serving.reduce_range)
            record = quantization_record(options.calibration_images, layout=layout, reduce_range=serving.reduce_range)
            int8_path = quantizer.quantize(Path(tmp) / "int8" / C.MODEL_FILE)
            if options.runtime == "auto":
                serving = spec.serving = _choose_runtime(int8_path, spec, options, progress, fp32_path=onnx_path)
            if serving.precision == "int8" and options.validation is not None:
                assert options.accuracy_budget is not None  # ExportOptions sets it with the validation set
                record["accuracy"] = quantize_within_budget(quantizer, onnx_path, int8_path, serving,
                                                            *options.validation, options.accuracy_budget / 100,
                                                            progress)
                if options.runtime == "auto" and record["accuracy"]["float_layers"]:  # the graph changed: re-timed
                    serving = spec.serving = _choose_runtime(int8_path, spec, options, progress,
                                                             fp32_path=onnx_path, keep=serving.runtime)
            if serving.precision == "int8":
                onnx_path = int8_path
            else:
                record["served"] = False  # measured, not served: the FP32 graph was as fast here
            spec.extra["quantization"] = record
        elif options.runtime == "auto":
            serving = spec.serving = _choose_runtime(onnx_path, spec, options, progress)
        export = export_gpu if options.target == "gpu" else export_cpu
        return export(spec, onnx_path, Path(out), num_priors, Path(tmp), progress)


def _choose_runtime(onnx_path: Path, spec, options: ExportOptions, progress: Progress,
                    fp32_path: Optional[Path] = None, keep: Optional[str] = None) -> C.ServingConfig:
    """``--cpu-runtime auto``: the installed runtime that runs this detector faster on this host (one image of
    the calibration folder, or a blank one), recorded with the timings and the CPU; the serving config with it.
    An INT8 detector is timed beside its FP32 graph on onnxruntime; where it gains nothing (slower than ``NO_GAIN``
    of FP32's time on every runtime) the FP32 graph is served instead, and the export says so (the serving config
    comes back in fp32: as fast, with the full accuracy). ``keep``: the runtime stays this one (the accuracy
    budget was measured on it); the timings are recorded."""
    import numpy as np

    from damo_yolo.serving.quantize import CalibrationImages
    from damo_yolo.serving.resources import cpu_isa, cpu_limit
    from damo_yolo.serving.runtimes import choose_runtime, installed_runtimes
    serving = spec.serving
    if options.calibration_images is not None:
        batch = next(iter(CalibrationImages(options.calibration_images, serving.input_size, serving.resize,
                                            serving.pad_value, max_images=1, batch_size=1)))
    else:
        batch = np.full((1, 3, *serving.input_size), serving.pad_value, np.float32)
    progress(f"timing the detector on {' and '.join(installed_runtimes())} to serve it on the faster here")
    chosen, record = choose_runtime(onnx_path, batch, serving.threads or cpu_limit(), fp32_path=fp32_path)
    if keep is not None and keep != chosen:
        progress(f"note: with its float layers the detector now runs faster on {chosen}; it stays on {keep}, where "
                 f"its accuracy was measured (--cpu-runtime {chosen} measures it there)")
        chosen = record["chosen"] = keep
    fp32_ms, int8_ms = record.get("fp32_onnxruntime_ms"), record["median_ms"][chosen]
    serving = replace(serving, runtime=chosen)
    if fp32_ms is not None and int8_ms > NO_GAIN * fp32_ms:
        # as TensorRT does layer by layer with INT8 allowed: a faster float kernel is taken; here, the whole graph
        serving = replace(serving, precision="fp32", runtime="onnxruntime", reduce_range=False)
        record["served"] = "fp32"
        progress(f"note: INT8 gains nothing here ({int8_ms:.1f} ms per image on {chosen} against FP32's "
                 f"{fp32_ms:.1f} on onnxruntime): serving FP32 on onnxruntime, as fast with the model's full "
                 f"accuracy (--cpu-runtime {chosen} serves the INT8 anyway)")
    else:
        record["served"] = serving.precision
        progress(f"serving on {chosen}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in record["median_ms"].items())
                 + (f" (FP32 {fp32_ms:.1f} ms)" if fp32_ms is not None else ""))
    spec.extra["runtime_choice"] = {**record, "cpu": cpu_isa()}
    return serving


def export_cpu(spec, onnx_path: Path, out: Path, num_priors: int, tmp: Path,
               progress: Progress = _silent) -> Path:
    """The CPU target: the detector's ONNX (FP32 or Q/DQ INT8) behind one python-backend model."""
    from damo_yolo.serving.repository import write_repository
    progress(f"writing the repository {out} and validating it as Triton will load it")
    return write_repository(spec, out, num_priors, onnx_path=onnx_path)


def export_gpu(spec, onnx_path: Path, out: Path, num_priors: int, tmp: Path,
               progress: Progress = _silent) -> Path:
    """The GPU target, built here (a GPU host with the pinned TensorRT and DALI): the end2end plan (detector +
    EfficientNMS_TRT) and the DALI backend's serialized preprocessing."""
    from damo_yolo.serving import platform
    from damo_yolo.serving.dali_preprocess import serialize_pipeline
    from damo_yolo.serving.end2end import NMSSettings, append_nms
    from damo_yolo.serving.repository import write_repository
    from damo_yolo.serving.tensorrt_builder import BuildOptions, build_engine
    trt, gpu = check_gpu_host()
    serving, batch = spec.serving, spec.max_batch_size
    if serving.precision == "fp16":  # a strongly typed network runs in the graph's types
        from damo_yolo.serving.fp16 import to_fp16
        progress("converting the detector graph to FP16 (input and outputs stay FP32)")
        onnx_path = to_fp16(onnx_path, tmp / "fp16" / C.MODEL_FILE)
    progress("appending EfficientNMS_TRT to the ONNX graph")
    end2end = append_nms(onnx_path, tmp / "end2end.onnx", NMSSettings.of(serving))  # FP32/FP16/Q-DQ detector + NMS
    progress(f"building the TensorRT {trt.__version__} plan ({serving.precision.upper()}) on {gpu.name}")
    plan = build_engine(end2end, tmp / "model.plan", BuildOptions(
        input_size=serving.input_size, precision=serving.precision, max_batch=batch, opt_batch=min(4, batch)))
    # serialized here, by the container's DALI, where CUDA is
    progress(f"serializing the DALI preprocessing (JPEG decoding: {serving.dali_decode})")
    dali = serialize_pipeline(tmp / "model.dali", serving.input_size, serving.resize, serving.pad_value, batch,
                              device="gpu", decode_path=serving.dali_decode)
    spec.extra.update(tensorrt=trt.__version__, container=platform.CONTAINER,
                      gpu={"name": gpu.name, "compute_capability": "%d.%d" % gpu.compute_capability})
    progress(f"writing the repository {out} and validating it as Triton will load it")
    return write_repository(spec, out, num_priors, plan_path=plan, dali_path=dali)


def _float_range(interval: C.Interval) -> click.FloatRange:
    return click.FloatRange(interval.low, interval.high, min_open=interval.low_open, max_open=interval.high_open)


class _Steps:
    """damo-export's progress: a line on stderr as each step starts, with the seconds since the start."""

    def __init__(self, quiet: bool):
        self.quiet, self.start = quiet, time.perf_counter()

    def __call__(self, step: str) -> None:
        if not self.quiet:
            click.echo(f"[{time.perf_counter() - self.start:5.1f} s] {step}", err=True)


def _recognised_variant(checkpoint: Path, trusted: bool) -> Optional[str]:
    """The variant a checkpoint holds by its own account (metadata, else its weights); None when it cannot tell."""
    from damo_yolo.models import CheckpointError, read_checkpoint
    from damo_yolo.models.checkpoint import checkpoint_meta
    try:
        return checkpoint_meta(read_checkpoint(checkpoint, trusted)).variant
    except CheckpointError:
        return None


def _refuse(exc: Exception, checkpoint: Path, options: ExportOptions, verbose: bool) -> NoReturn:
    """The one-line reason an export failed (with --verbose, every mismatched key before it)."""
    from damo_yolo.models import CheckpointError
    from damo_yolo.serving.tensorrt_builder import TensorRTUnavailable
    if isinstance(exc, RuntimeError) and not isinstance(exc, (CheckpointError, TensorRTUnavailable)):
        raise exc  # not a refusal but a fault: its traceback is the report
    message, listing = str(exc).splitlines()[0], getattr(exc, "details", "")
    if isinstance(exc, CheckpointError) and options.variant:
        recognised = _recognised_variant(checkpoint, options.trusted)
        if recognised and recognised != options.variant:
            message = (f"the weights are DAMO-YOLO-{recognised}'s, not {options.variant}'s: drop --variant or pass "
                       f"--variant {recognised}")
            listing = f"{exc}\n{listing}" if listing else ""  # the mismatch summary, then every key
    if listing and verbose:
        click.echo(listing.replace("; ", "\n"), err=True)
    elif listing:
        message += " (--verbose lists every key)"
    raise click.ClickException(message)


@click.command(context_settings=CONTEXT)
@click.version_option(package_name="damo-yolo", prog_name="damo-export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Model repository folder (models already there are replaced only with --force).")
@click.option("--force", is_flag=True, help="Replace this export's models if --out holds them.")
@click.option("--variant", callback=variant_option,
              help="Variant of an official checkpoint [default: recognised from its weights].")
@click.option("--verbose", is_flag=True, help="On a checkpoint that does not fit, list every key.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines (the steps and their times) on stderr.")
@click.option("--target", type=click.Choice(TARGETS), default=ExportOptions.target, show_default=True,
              help="cpu: python backend + onnxruntime; gpu: TensorRT plan and DALI (needs the GPU it will run on).")
@click.option("--name", default=ExportOptions.name, show_default=True, help="Model name clients call.")
@click.option("--thresholds", type=click.Choice(THRESHOLD_SETS), default=ExportOptions.thresholds,
              show_default=True,
              help=f"Served defaults when a request sets none: serving = score > {C.SERVING_SCORE_THRESHOLD:g}, "
                   f"{C.SERVING_MAX_DETECTIONS} boxes (best F1 on the synthetic set, perf/results/thresholds.md); "
                   f"evaluation = the checkpoint's own (for mAP).")
@click.option("--score-threshold", type=_float_range(C.SCORE_RANGE),
              help="Served default score threshold [default: as --thresholds sets it].")
@click.option("--iou-threshold", type=_float_range(C.IOU_RANGE),
              help="Served default NMS IoU [default: the checkpoint's].")
@click.option("--max-detections", type=click.IntRange(min=1),
              help="Boxes per image, K [default: as --thresholds sets it].")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=ExportOptions.max_batch_size,
              show_default=True, help="Largest batch a model executes.")
@click.option("--instances", type=click.IntRange(min=1),
              help="CPU: instances of the model, each decoding, detecting (on every core) and post-processing; "
                   "GPU: plan instances [default: 2 on cpu, 1 on gpu].")
@click.option("--precision", type=click.Choice(C.PRECISIONS),
              help="cpu: fp32 or int8; gpu: fp16, fp32 or int8. int8 is a Q/DQ ONNX calibrated on "
                   "--calibration-images [default: fp32 on cpu, fp16 on gpu].")
@click.option("--calibration-images", type=click.Path(path_type=Path),
              help="int8: a folder of images like those served (the first 128, sorted by name).")
@click.option("--validation", nargs=2, type=click.Path(path_type=Path), metavar="ANNOTATIONS IMAGES",
              help="int8 on cpu: a COCO annotations file and its images: FP32 and INT8 mAP measured through the "
                   "served pipeline; over --accuracy-budget, the layers most sensitive to INT8 stay float until "
                   "within it, or the export is refused.")
@click.option("--accuracy-budget", type=click.FloatRange(min=0, max=100),
              help="with --validation: mAP points INT8 may lose against FP32 [default: 1.0].")
@click.option("--preprocess", type=click.Choice(C.DECODERS),
              help="Decode + resize with OpenCV or NVIDIA DALI [default: opencv on cpu, dali on gpu].")
@click.option("--dali-decode", type=click.Choice(C.DALI_DECODE_PATHS),
              help="GPU: where DALI decodes JPEGs: auto = DALI's default (the GPU's hardware JPEG decoder where it "
                   "has one), cuda = nvJPEG on CUDA only, cpu = on the CPU, then to the GPU [default: auto].")
@click.option("--cpu-runtime", type=click.Choice(CPU_RUNTIMES),
              help="CPU target: the detector's runtime: onnxruntime, Intel's OpenVINO (its default precision: "
                   "bfloat16 on CPUs with AVX-512 BF16 or AMX), or auto: the faster on this host, timed here "
                   "[default: auto for int8, onnxruntime for fp32].")
@click.option("--reduce-range/--no-reduce-range", default=None,
              help="CPU INT8: weights in 7 bits, for serving CPUs without VNNI (AVX2 saturates 8-bit products) "
                   "[default: if this host has no VNNI].")
@click.option("--no-dynamic-batching", is_flag=True, help="One request per model execution.")
@click.option("--max-queue-delay-us", type=click.IntRange(min=0), default=ExportOptions.max_queue_delay_us,
              show_default=True,
              help="How long a request may wait for others to batch with (0: a batch is what queued while the "
                   "model was busy).")
@click.option("--max-pixels", type=click.IntRange(min=0), default=ExportOptions.max_pixels, show_default=True,
              help="CPU target: larger images get a 400 from their header, before decoding (0: no limit); the "
                   "decoded image takes 3 bytes a pixel per concurrent decode.")
@click.option("--trusted", is_flag=True, help="Allow pickled Python objects in the checkpoint.")
def cli(checkpoint: Path, out: Path, verbose: bool, quiet: bool, no_dynamic_batching: bool, **fields: Any) -> None:
    """Export CHECKPOINT (damo-train's, or an official DAMO-YOLO .pth) to a Triton model repository.

    \b
        damo-export work_dirs/x/best.pth --out triton_models
        damo-export damoyolo_tinynasL25_S.pth --variant S --out triton_models  # an official checkpoint
        damo-export best.pth --target gpu --precision fp16 --out triton_models  # on a GPU host (DALI)
        damo-export best.pth --target gpu --dali-decode cuda --out triton_models  # no hardware JPEG decoder
        damo-export best.pth --preprocess dali --out triton_models              # CPU target, DALI decoding
        damo-export best.pth --thresholds evaluation --out eval_models          # the checkpoint's thresholds
        damo-export best.pth --precision int8 --calibration-images data/synthetic/train --out triton_models
        damo-export best.pth --precision int8 --calibration-images data/synthetic/train \\
            --validation data/synthetic/annotations/instances_val.json data/synthetic/val --out triton_models
        damo-export best.pth --cpu-runtime openvino --out triton_models        # OpenVINO runs the detector
    then: tritonserver --model-repository triton_models

    \b
    The project's checkpoints carry their variant, classes, input size and resize policy; official ones
    get their variant's reference settings (recognised from the weights; --variant names it when several
    fit). Prints its steps on stderr; exits 1 with a one-line reason on failure.
    """
    try:  # the options and files first, before the seconds torch and onnx take to import
        options = ExportOptions(**fields, dynamic_batching=not no_dynamic_batching)
        problem = checkpoint_file_problem(checkpoint)  # read_checkpoint's own check, without torch
        if problem:
            raise ValueError(problem)
        check_out(out, options.name, options.force)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    steps = _Steps(quiet)
    try:
        written = export_repository(checkpoint, out, options, progress=steps)
    except (ValueError, RuntimeError) as exc:
        _refuse(exc, checkpoint, options, verbose)
    steps("done")
    click.echo(f"model repository written to {written}: tritonserver --model-repository {written}")
    from damo_yolo.serving.platform import platform_warnings
    from damo_yolo.serving.repository import repository_summary
    for warning in platform_warnings(repository_summary(written, options.name)):
        click.echo(f"warning: {warning}", err=True)


def main(argv: Optional[list[str]] = None) -> int:
    """`damo-export` with ``argv`` (default: the command line); returns the exit code (2: a usage error)."""
    return run(cli, argv, "damo-export")


if __name__ == "__main__":
    raise SystemExit(main())
