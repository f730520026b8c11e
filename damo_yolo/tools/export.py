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
from pathlib import Path
from typing import Optional

from damo_yolo.contract import MAX_PIXELS


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


THRESHOLD_SETS = ("serving", "evaluation")
PRECISIONS = {"cpu": ("fp32", "int8"), "gpu": ("fp32", "fp16", "int8")}
DEFAULT_PRECISION = {"cpu": "fp32", "gpu": "fp16"}


def check_precision(target: str, precision: Optional[str], calibration_images: Optional[Path]) -> str:
    """The precision to export (the target's default when None); refuses what the target cannot serve."""
    precision = precision or DEFAULT_PRECISION.get(target, "fp32")
    if precision not in PRECISIONS.get(target, ()):
        raise ValueError(f"--precision {precision} is not served by the {target} target: choose "
                         f"{' or '.join(PRECISIONS.get(target, ()))}")
    if precision == "int8":
        if calibration_images is None:
            raise ValueError("--precision int8 needs --calibration-images DIR: a folder of images like those served "
                             "(its Q/DQ scales are calibrated on them)")
        if not Path(calibration_images).is_dir():
            raise ValueError(f"--calibration-images {calibration_images} is not a folder")
    return precision


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


def export_repository(checkpoint: Path, out: Path, variant: Optional[str] = None, target: str = "cpu",
                      name: str = "damo_yolo", score_threshold: Optional[float] = None,
                      iou_threshold: Optional[float] = None, max_detections: Optional[int] = None,
                      max_batch_size: int = 8, instances: Optional[int] = None, precision: Optional[str] = None,
                      trusted: bool = False, preprocess: Optional[str] = None, dynamic_batching: bool = True,
                      max_queue_delay_us: Optional[int] = None, force: bool = False,
                      thresholds: str = "serving", calibration_images: Optional[Path] = None,
                      max_pixels: Optional[int] = None) -> Path:
    """Export ``checkpoint`` into the model repository ``out`` (refuses to replace its models unless ``force``).

    ``thresholds``: the defaults served when a request sets none — "serving" (score > 0.5, 100 boxes:
    damo_yolo.contract's SERVING_*) or "evaluation" (the checkpoint's own, e.g. 0.03 and 500 boxes, for mAP);
    ``score_threshold`` / ``max_detections`` override either. The IoU is the checkpoint's unless given.
    ``precision``: cpu fp32 (default) or int8; gpu fp16 (default), fp32 or int8. INT8 is one Q/DQ ONNX
    calibrated on ``calibration_images``, served by onnxruntime (cpu) or built into the plan (gpu)."""
    if thresholds not in THRESHOLD_SETS:
        raise ValueError(f"unknown thresholds {thresholds!r}; choose {' or '.join(THRESHOLD_SETS)}")
    precision = check_precision(target, precision, calibration_images)
    check_out(Path(out), name, force)
    import onnx
    import onnxruntime
    import torch

    from damo_yolo import __version__
    from damo_yolo.serving.onnx_export import export_onnx
    from damo_yolo.serving.repository import RepositorySpec, write_repository
    from damo_yolo.models import load_model

    from damo_yolo import contract as C
    model, meta = load_model(checkpoint, variant, trusted=trusted)
    h, w = meta.input_size
    serving = thresholds == "serving"
    if score_threshold is None:
        score_threshold = C.SERVING_SCORE_THRESHOLD if serving else meta.score_threshold
    if max_detections is None:
        max_detections = C.SERVING_MAX_DETECTIONS if serving else meta.max_detections
    spec = RepositorySpec(
        input_size=(h, w), class_names=list(meta.class_names), name=name, resize=meta.resize,
        pad_value=float(meta.pad_value), score_threshold=score_threshold,
        iou_threshold=meta.iou_threshold if iou_threshold is None else iou_threshold, max_detections=max_detections,
        # GPU: the plan's NMS keeps what the checkpoint's evaluation would, so requests may go as low
        nms_score_threshold=min(meta.score_threshold, score_threshold), target=target, preprocess=preprocess, max_batch_size=max_batch_size, dynamic_batching=dynamic_batching,
        **({} if max_queue_delay_us is None else {"max_queue_delay_us": max_queue_delay_us}),
        **({} if max_pixels is None else {"max_pixels": max_pixels}),
        **({} if instances is None else {"cpu_instances" if target == "cpu" else "detector_instances": instances}),
        extra={"checkpoint": str(checkpoint), "checkpoint_sha256": _sha256(Path(checkpoint)),
               "variant": meta.variant, "precision": precision,
               "versions": {"damo_yolo": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                            "onnxruntime": onnxruntime.__version__},
               "train_metrics": meta.metrics})
    num_priors = sum((h // s) * (w // s) for s in model.cfg.strides)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", input_size=(h, w))
        if precision == "int8":
            from damo_yolo.serving.quantize import quantize_onnx, quantization_record
            onnx_path = quantize_onnx(onnx_path, Path(tmp) / "int8" / "model.onnx", calibration_images, (h, w),
                                      spec.resize, spec.pad_value)
            spec.extra["quantization"] = quantization_record(calibration_images)
        plan_path = None
        if target == "gpu":  # the plan holds the NMS: the end2end graph with EfficientNMS_TRT
            from damo_yolo.serving import platform
            from damo_yolo.serving.end2end import NMSSettings, append_nms
            from damo_yolo.serving.tensorrt_builder import BuildOptions, build_engine, gpu_info, import_tensorrt
            trt, gpu = import_tensorrt(), gpu_info()
            try:
                from nvidia.dali import __version__ as dali_version
            except ImportError:
                raise ValueError(f"NVIDIA DALI is not installed: pip install '.[gpu]' (DALI {platform.DALI})") from None
            if platform.dali_mismatch(dali_version):
                raise ValueError(platform.dali_mismatch(dali_version))
            nms = NMSSettings(spec.nms_score_threshold, spec.iou_threshold, spec.max_detections)
            end2end = append_nms(onnx_path, Path(tmp) / "end2end.onnx", nms)  # FP32 or Q/DQ detector + NMS
            plan_path = build_engine(end2end, Path(tmp) / "model.plan",
                                     BuildOptions(input_size=(h, w), precision=precision, max_batch=max_batch_size,
                                                  opt_batch=min(4, max_batch_size)))
            spec.extra.update(tensorrt=trt.__version__, container=platform.CONTAINER,
                              gpu={"name": gpu.name, "compute_capability": "%d.%d" % gpu.compute_capability})
        dali_path = None
        if spec.dali_backend:  # serialized here, by the container's DALI, where CUDA is
            from damo_yolo.serving.dali_preprocess import serialize_pipeline
            dali_path = serialize_pipeline(Path(tmp) / "model.dali", (h, w), spec.resize, spec.pad_value,
                                           max_batch_size, device="gpu")
        return write_repository(spec, out, num_priors, onnx_path=onnx_path, plan_path=plan_path, dali_path=dali_path)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="damo-export", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a checkpoint of damo-train, or an official DAMO-YOLO .pth")
    parser.add_argument("--out", type=Path, required=True,
                        help="model repository folder (models already there are replaced only with --force)")
    parser.add_argument("--force", action="store_true", help="replace this export's models if --out holds them")
    parser.add_argument("--variant", help="variant of an official checkpoint (default: recognised from its weights)")
    parser.add_argument("--verbose", action="store_true", help="on a checkpoint that does not fit, list every key")
    parser.add_argument("--target", choices=["cpu", "gpu"], default="cpu",
                        help="cpu: python backends + onnxruntime; gpu: TensorRT plan (needs a GPU)")
    parser.add_argument("--name", default="damo_yolo", help="model name clients call")
    parser.add_argument("--thresholds", choices=THRESHOLD_SETS, default="serving",
                        help="served defaults when a request sets none: serving = score > 0.5, 100 boxes (best F1 "
                             "on the synthetic set, perf/results/thresholds.md); evaluation = the checkpoint's "
                             "own (e.g. 0.03, 500 boxes: for mAP)")
    parser.add_argument("--score-threshold", type=float, help="served default score threshold (overrides --thresholds)")
    parser.add_argument("--iou-threshold", type=float, help="served default NMS IoU (default: the checkpoint's)")
    parser.add_argument("--max-detections", type=int, help="boxes per image, K (overrides --thresholds)")
    parser.add_argument("--max-batch-size", type=int, default=8, help="largest batch a model executes")
    parser.add_argument("--instances", type=int,
                        help="CPU: instances of the model, each decoding, detecting (on every core) and "
                             "post-processing (default 2); GPU: plan instances (default 1)")
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"],
                        help="cpu: fp32 (default) or int8; gpu: fp16 (default), fp32 or int8. int8 is a Q/DQ ONNX "
                             "calibrated on --calibration-images")
    parser.add_argument("--calibration-images", type=Path,
                        help="int8: a folder of images like those served (the first 128, sorted by name)")
    parser.add_argument("--preprocess", choices=["opencv", "dali"],
                        help="decode + resize with OpenCV or NVIDIA DALI (default: dali on gpu, opencv on cpu)")
    parser.add_argument("--no-dynamic-batching", action="store_true", help="one request per model execution")
    parser.add_argument("--max-queue-delay-us", type=int,
                        help="how long a request may wait for others to batch with (default 0: a batch is what "
                             "queued while the model was busy)")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                        help="CPU target: larger images get a 400 from their header, before decoding (0: no limit); "
                             "the decoded image takes 3 bytes a pixel per concurrent decode")
    parser.add_argument("--trusted", action="store_true", help="allow pickled Python objects in the checkpoint")
    args = parser.parse_args(argv)
    from damo_yolo.serving.tensorrt_builder import TensorRTUnavailable
    from damo_yolo.models import CheckpointError
    try:
        out = export_repository(args.checkpoint, args.out, args.variant, args.target, args.name,
                                args.score_threshold, args.iou_threshold, args.max_detections,
                                args.max_batch_size, args.instances, args.precision, args.trusted,
                                args.preprocess, not args.no_dynamic_batching, args.max_queue_delay_us, args.force,
                                args.thresholds, args.calibration_images, args.max_pixels)
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
