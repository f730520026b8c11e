"""`damo-export`: a checkpoint → a Triton model repository (`tritonserver --model-repository OUT`).

    damo-export work_dirs/x/best.pth --out triton_models
    damo-export damoyolo_tinynasL25_S.pth --variant S --out triton_models     # an official checkpoint
    damo-export best.pth --target gpu --precision fp16 --out triton_models   # on a GPU host (DALI preprocess)
    damo-export best.pth --preprocess dali --out triton_models               # CPU target, DALI CPU decoding
    damo-export best.pth --thresholds evaluation --out eval_models           # serve the checkpoint's mAP thresholds
    damo-export best.pth --precision int8 --calibration-images data/synthetic/train --out triton_models
                                              # INT8 (Q/DQ ONNX): onnxruntime on the CPU, the plan's source on a GPU

The project's checkpoints carry their variant, classes, input size and resize policy; official ones get
their variant's reference settings (the variant is recognised from the weights; ``--variant`` names it
when several fit). Exits 1 with a one-line reason on failure (``--verbose``: every mismatched key).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Optional

from damo_yolo import contract as C

THRESHOLD_SETS = ("serving", "evaluation")
TARGETS = ("cpu", "gpu")
PRECISIONS = {"cpu": ("fp32", "int8"), "gpu": ("fp32", "fp16", "int8")}
DEFAULT_PRECISION = {"cpu": "fp32", "gpu": "fp16"}


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
    preprocess: Optional[str] = None  # opencv or dali (default: dali on gpu, opencv on cpu)
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
            if not Path(self.calibration_images).is_dir():
                raise ValueError(f"--calibration-images {self.calibration_images} is not a folder")

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
            decoder=self.preprocess, max_pixels=self.max_pixels,
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


def export_repository(checkpoint: Path, out: Path, options: Optional[ExportOptions] = None,
                      **changes) -> Path:
    """Export ``checkpoint`` into the model repository ``out`` (refuses to replace its models unless
    ``force``): ``options``, with ``changes`` (ExportOptions' fields by keyword) applied."""
    options = replace(options or ExportOptions(), **changes)
    check_out(Path(out), options.name, options.force)
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
               "versions": {"damo_yolo": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                            "onnxruntime": onnxruntime.__version__},
               "train_metrics": meta.metrics})
    h, w = serving.input_size
    num_priors = sum((h // s) * (w // s) for s in model.cfg.strides)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / C.MODEL_FILE, input_size=(h, w))
        if serving.precision == "int8":
            from damo_yolo.serving.quantize import quantization_record, quantize_onnx
            onnx_path = quantize_onnx(onnx_path, Path(tmp) / "int8" / C.MODEL_FILE, options.calibration_images,
                                      (h, w), serving.resize, serving.pad_value)
            spec.extra["quantization"] = quantization_record(options.calibration_images)
        export = export_gpu if options.target == "gpu" else export_cpu
        return export(spec, onnx_path, Path(out), num_priors, Path(tmp))


def export_cpu(spec, onnx_path: Path, out: Path, num_priors: int, tmp: Path) -> Path:
    """The CPU target: the detector's ONNX (FP32 or Q/DQ INT8) behind one python-backend model."""
    from damo_yolo.serving.repository import write_repository
    return write_repository(spec, out, num_priors, onnx_path=onnx_path)


def export_gpu(spec, onnx_path: Path, out: Path, num_priors: int, tmp: Path) -> Path:
    """The GPU target, built here (a GPU host with the pinned TensorRT and DALI): the end2end plan (detector +
    EfficientNMS_TRT) and the DALI backend's serialized preprocessing."""
    from damo_yolo.serving import platform
    from damo_yolo.serving.dali_preprocess import serialize_pipeline
    from damo_yolo.serving.end2end import NMSSettings, append_nms
    from damo_yolo.serving.repository import write_repository
    from damo_yolo.serving.tensorrt_builder import BuildOptions, build_engine, gpu_info, import_tensorrt
    trt, gpu = import_tensorrt(), gpu_info()
    try:
        from nvidia.dali import __version__ as dali_version
    except ImportError:
        raise ValueError(f"NVIDIA DALI is not installed: pip install '.[gpu]' (DALI {platform.DALI})") from None
    if platform.dali_mismatch(dali_version):
        raise ValueError(platform.dali_mismatch(dali_version))
    serving, batch = spec.serving, spec.max_batch_size
    end2end = append_nms(onnx_path, tmp / "end2end.onnx", NMSSettings.of(serving))  # FP32 or Q/DQ detector + NMS
    plan = build_engine(end2end, tmp / "model.plan", BuildOptions(
        input_size=serving.input_size, precision=serving.precision, max_batch=batch, opt_batch=min(4, batch)))
    # serialized here, by the container's DALI, where CUDA is
    dali = serialize_pipeline(tmp / "model.dali", serving.input_size, serving.resize, serving.pad_value, batch,
                              device="gpu")
    spec.extra.update(tensorrt=trt.__version__, container=platform.CONTAINER,
                      gpu={"name": gpu.name, "compute_capability": "%d.%d" % gpu.compute_capability})
    return write_repository(spec, out, num_priors, plan_path=plan, dali_path=dali)


def main(argv: Optional[list[str]] = None) -> int:
    default = ExportOptions()
    parser = argparse.ArgumentParser(prog="damo-export", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a checkpoint of damo-train, or an official DAMO-YOLO .pth")
    parser.add_argument("--out", type=Path, required=True,
                        help="model repository folder (models already there are replaced only with --force)")
    parser.add_argument("--force", action="store_true", help="replace this export's models if --out holds them")
    parser.add_argument("--variant", help="variant of an official checkpoint (default: recognised from its weights)")
    parser.add_argument("--verbose", action="store_true", help="on a checkpoint that does not fit, list every key")
    parser.add_argument("--target", choices=TARGETS, default=default.target,
                        help="cpu: python backends + onnxruntime; gpu: TensorRT plan (needs a GPU)")
    parser.add_argument("--name", default=default.name, help="model name clients call")
    parser.add_argument("--thresholds", choices=THRESHOLD_SETS, default=default.thresholds,
                        help=f"served defaults when a request sets none: serving = score > "
                             f"{C.SERVING_SCORE_THRESHOLD:g}, {C.SERVING_MAX_DETECTIONS} boxes (best F1 on the "
                             f"synthetic set, perf/results/thresholds.md); evaluation = the checkpoint's own (for mAP)")
    parser.add_argument("--score-threshold", type=float, help="served default score threshold (overrides --thresholds)")
    parser.add_argument("--iou-threshold", type=float, help="served default NMS IoU (default: the checkpoint's)")
    parser.add_argument("--max-detections", type=int, help="boxes per image, K (overrides --thresholds)")
    parser.add_argument("--max-batch-size", type=int, default=default.max_batch_size,
                        help="largest batch a model executes")
    parser.add_argument("--instances", type=int,
                        help="CPU: instances of the model, each decoding, detecting (on every core) and "
                             "post-processing (default 2); GPU: plan instances (default 1)")
    parser.add_argument("--precision", choices=C.PRECISIONS,
                        help="cpu: fp32 (default) or int8; gpu: fp16 (default), fp32 or int8. int8 is a Q/DQ ONNX "
                             "calibrated on --calibration-images")
    parser.add_argument("--calibration-images", type=Path,
                        help="int8: a folder of images like those served (the first 128, sorted by name)")
    parser.add_argument("--preprocess", choices=C.DECODERS,
                        help="decode + resize with OpenCV or NVIDIA DALI (default: dali on gpu, opencv on cpu)")
    parser.add_argument("--no-dynamic-batching", action="store_true", help="one request per model execution")
    parser.add_argument("--max-queue-delay-us", type=int, default=default.max_queue_delay_us,
                        help="how long a request may wait for others to batch with (0: a batch is what queued while "
                             "the model was busy)")
    parser.add_argument("--max-pixels", type=int, default=default.max_pixels,
                        help="CPU target: larger images get a 400 from their header, before decoding (0: no limit); "
                             "the decoded image takes 3 bytes a pixel per concurrent decode")
    parser.add_argument("--trusted", action="store_true", help="allow pickled Python objects in the checkpoint")
    args = parser.parse_args(argv)
    from damo_yolo.models import CheckpointError
    from damo_yolo.serving.tensorrt_builder import TensorRTUnavailable
    try:
        options = {f.name: getattr(args, f.name) for f in fields(ExportOptions) if hasattr(args, f.name)}
        out = export_repository(args.checkpoint, args.out,
                                ExportOptions(**options, dynamic_batching=not args.no_dynamic_batching))
    except (CheckpointError, TensorRTUnavailable, ValueError) as exc:
        print(f"damo-export: {exc}", file=sys.stderr)
        if args.verbose and getattr(exc, "details", ""):
            print(exc.details.replace("; ", "\n"), file=sys.stderr)
        elif getattr(exc, "details", ""):
            print("damo-export: --verbose lists every key", file=sys.stderr)
        return 1
    print(f"model repository written to {out}: tritonserver --model-repository {out}")
    from damo_yolo.serving.platform import platform_warnings
    from damo_yolo.serving.repository import repository_summary
    for warning in platform_warnings(repository_summary(out, args.name)):
        print(f"damo-export: warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
