"""The Triton model repository: an ensemble ``<name>`` over ``<name>_preprocess`` → ``<name>_detector`` →
``<name>_postprocess``, generated from one checkpoint's metadata.

Every ``config.pbtxt`` is built as Triton's ``ModelConfig`` protobuf message and written in its text
format, so a config that would not parse cannot be written. The ensemble contract (see design.md):
``IMAGE`` BYTES [1] (+ optional ``SCORE_THRESHOLD`` / ``IOU_THRESHOLD`` FP32 [1]) → ``num_detections``
INT32 [1], ``boxes`` FP32 [K, 4], ``scores`` FP32 [K], ``classes`` INT32 [K] (names in labels.txt).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

TARGETS = ("cpu", "gpu")
TEMPLATES = Path(__file__).resolve().parent / "triton"


@dataclass
class RepositorySpec:
    input_size: tuple[int, int]
    class_names: list[str]
    name: str = "damo_yolo"
    resize: str = "stretch"
    pad_value: float = 0.0
    score_threshold: float = 0.05
    iou_threshold: float = 0.65
    max_detections: int = 100
    target: str = "cpu"
    max_batch_size: int = 8
    preferred_batch_sizes: tuple[int, ...] = (4, 8)
    max_queue_delay_us: int = 2000
    detector_instances: int = 1
    preprocess_instances: int = 2
    postprocess_instances: int = 1
    extra: dict = field(default_factory=dict)  # recorded in export.json (checkpoint hash, versions, ...)

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; choose {' or '.join(TARGETS)}")
        if self.max_batch_size < 1 or any(b < 1 or b > self.max_batch_size for b in self.preferred_batch_sizes):
            raise ValueError("preferred batch sizes must lie in 1..max_batch_size")
        if not self.class_names:
            raise ValueError("class_names must not be empty")

    @property
    def model_names(self) -> dict[str, str]:
        return {step: f"{self.name}_{step}" for step in ("preprocess", "detector", "postprocess")}


def _pb():
    from tritonclient.grpc import model_config_pb2
    return model_config_pb2


def _tensor(message_cls, name: str, dtype: str, dims, optional: bool = False, label_filename: str = ""):
    pb = _pb()
    tensor = message_cls(name=name, data_type=getattr(pb, dtype), dims=list(dims))
    if optional:
        tensor.optional = True
    if label_filename:
        tensor.label_filename = label_filename
    return tensor


def _params(config, values: dict) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def _batching(spec: RepositorySpec, config) -> None:
    config.dynamic_batching.preferred_batch_size.extend(spec.preferred_batch_sizes)
    config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us


def model_configs(spec: RepositorySpec, num_priors: int) -> dict:
    """name → ModelConfig of every model of the repository (CPU target: python backends)."""
    pb = _pb()
    In, Out = pb.ModelInput, pb.ModelOutput
    names = spec.model_names
    h, w = spec.input_size
    c, k = len(spec.class_names), spec.max_detections
    kind = pb.ModelInstanceGroup.KIND_CPU if spec.target == "cpu" else pb.ModelInstanceGroup.KIND_GPU

    pre = pb.ModelConfig(name=names["preprocess"], backend="python", max_batch_size=spec.max_batch_size)
    pre.input.append(_tensor(In, "IMAGE", "TYPE_STRING", [1]))
    pre.output.extend([_tensor(Out, "INPUT", "TYPE_FP32", [3, h, w]), _tensor(Out, "SCALE", "TYPE_FP32", [2]),
                       _tensor(Out, "ORIG_SIZE", "TYPE_INT32", [2])])
    pre.instance_group.append(pb.ModelInstanceGroup(kind=pb.ModelInstanceGroup.KIND_CPU,
                                                    count=spec.preprocess_instances))
    _params(pre, {"input_height": h, "input_width": w, "resize": spec.resize, "pad_value": spec.pad_value})
    _batching(spec, pre)

    det = pb.ModelConfig(name=names["detector"], max_batch_size=spec.max_batch_size)
    if spec.target == "cpu":
        det.backend = "python"
        det.input.append(_tensor(In, "INPUT", "TYPE_FP32", [3, h, w]))
        det.output.extend([_tensor(Out, "SCORES", "TYPE_FP32", [num_priors, c]),
                           _tensor(Out, "BOXES", "TYPE_FP32", [num_priors, 4])])
        _params(det, {"onnx_file": "model.onnx"})
    else:
        det.platform = "tensorrt_plan"
        det.input.append(_tensor(In, "images", "TYPE_FP32", [3, h, w]))
        det.output.extend([_tensor(Out, "scores", "TYPE_FP32", [num_priors, c]),
                           _tensor(Out, "boxes", "TYPE_FP32", [num_priors, 4])])
    det.instance_group.append(pb.ModelInstanceGroup(kind=kind, count=spec.detector_instances))
    _batching(spec, det)

    post = pb.ModelConfig(name=names["postprocess"], backend="python", max_batch_size=spec.max_batch_size)
    post.input.extend([_tensor(In, "SCORES", "TYPE_FP32", [num_priors, c]),
                       _tensor(In, "BOXES", "TYPE_FP32", [num_priors, 4]),
                       _tensor(In, "SCALE", "TYPE_FP32", [2]), _tensor(In, "ORIG_SIZE", "TYPE_INT32", [2]),
                       _tensor(In, "SCORE_THRESHOLD", "TYPE_FP32", [1], optional=True),
                       _tensor(In, "IOU_THRESHOLD", "TYPE_FP32", [1], optional=True)])
    post.output.extend(_contract_outputs(Out, k))
    post.instance_group.append(pb.ModelInstanceGroup(kind=pb.ModelInstanceGroup.KIND_CPU,
                                                     count=spec.postprocess_instances))
    _params(post, {"score_threshold": spec.score_threshold, "iou_threshold": spec.iou_threshold,
                   "max_detections": k})
    _batching(spec, post)

    ens = pb.ModelConfig(name=spec.name, platform="ensemble", max_batch_size=spec.max_batch_size)
    ens.input.extend([_tensor(In, "IMAGE", "TYPE_STRING", [1]),
                      _tensor(In, "SCORE_THRESHOLD", "TYPE_FP32", [1], optional=True),
                      _tensor(In, "IOU_THRESHOLD", "TYPE_FP32", [1], optional=True)])
    ens.output.extend(_contract_outputs(Out, k, label_filename="labels.txt"))
    det_in, det_scores, det_boxes = (("INPUT", "SCORES", "BOXES") if spec.target == "cpu"
                                     else ("images", "scores", "boxes"))
    steps = [
        (names["preprocess"], {"IMAGE": "IMAGE"},
         {"INPUT": "_input", "SCALE": "_scale", "ORIG_SIZE": "_orig_size"}),
        (names["detector"], {det_in: "_input"}, {det_scores: "_raw_scores", det_boxes: "_raw_boxes"}),
        (names["postprocess"], {"SCORES": "_raw_scores", "BOXES": "_raw_boxes", "SCALE": "_scale",
                                "ORIG_SIZE": "_orig_size", "SCORE_THRESHOLD": "SCORE_THRESHOLD",
                                "IOU_THRESHOLD": "IOU_THRESHOLD"},
         {name: name for name in ("num_detections", "boxes", "scores", "classes")}),
    ]
    for model_name, inputs, outputs in steps:
        step = ens.ensemble_scheduling.step.add(model_name=model_name, model_version=-1)
        step.input_map.update(inputs)
        step.output_map.update(outputs)
    return {cfg.name: cfg for cfg in (ens, pre, det, post)}


def _contract_outputs(Out, k: int, label_filename: str = "") -> list:
    return [_tensor(Out, "num_detections", "TYPE_INT32", [1]), _tensor(Out, "boxes", "TYPE_FP32", [k, 4]),
            _tensor(Out, "scores", "TYPE_FP32", [k]),
            _tensor(Out, "classes", "TYPE_INT32", [k], label_filename=label_filename)]


def config_text(config) -> str:
    from google.protobuf import text_format
    return text_format.MessageToString(config)


def parse_config(text: str):
    """Parse config.pbtxt text with Triton's ModelConfig schema (raises on any unknown field)."""
    from google.protobuf import text_format
    return text_format.Parse(text, _pb().ModelConfig())


def write_repository(spec: RepositorySpec, out_dir, num_priors: int, onnx_path: Optional[Path] = None,
                     plan_path: Optional[Path] = None) -> Path:
    """Write (or update) the models of ``spec`` under ``out_dir``; other models there are left alone."""
    out = Path(out_dir)
    names = spec.model_names
    configs = model_configs(spec, num_priors)
    for name, config in configs.items():
        model_dir = out / name
        if model_dir.exists():
            shutil.rmtree(model_dir)
        (model_dir / "1").mkdir(parents=True)
        (model_dir / "config.pbtxt").write_text(config_text(config))
    shutil.copy2(TEMPLATES / "preprocess.py", out / names["preprocess"] / "1" / "model.py")
    shutil.copy2(TEMPLATES / "postprocess.py", out / names["postprocess"] / "1" / "model.py")
    if spec.target == "cpu":
        if onnx_path is None:
            raise ValueError("the CPU target needs the detector's ONNX graph")
        shutil.copy2(TEMPLATES / "detector_onnxruntime.py", out / names["detector"] / "1" / "model.py")
        shutil.copy2(onnx_path, out / names["detector"] / "1" / "model.onnx")
    elif plan_path is not None:
        shutil.copy2(plan_path, out / names["detector"] / "1" / "model.plan")
    (out / spec.name / "labels.txt").write_text("\n".join(spec.class_names) + "\n")
    record = {k: v for k, v in asdict(spec).items() if k != "extra"}
    record.update(spec.extra, models=list(configs), num_priors=num_priors)
    (out / spec.name / "export.json").write_text(json.dumps(record, indent=2) + "\n")
    return out
