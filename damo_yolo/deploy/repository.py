"""The Triton model repository: an ensemble ``<name>`` over ``<name>_preprocess`` → ``<name>_detector`` →
``<name>_postprocess``, generated from one checkpoint's metadata.

Every ``config.pbtxt`` is built as Triton's ``ModelConfig`` protobuf message and written in its text
format, so a config that would not parse cannot be written. Tensor names, types and dims come from the
serving contract (damo_yolo.contract), the same on both targets.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from .. import __version__
from .. import contract as C
from .platform import platform_warnings
from .triton.common import VERSION_PARAMETER

TARGETS = ("cpu", "gpu")
PREPROCESSORS = ("opencv", "dali")  # python backend with OpenCV, or with an NVIDIA DALI pipeline
TEMPLATES = Path(__file__).resolve().parent / "triton"


def step_names(name: str) -> dict[str, str]:
    """The models behind the ensemble ``name``: step → model name."""
    return {step: f"{name}_{step}" for step in ("preprocess", "detector", "postprocess")}


@dataclass
class RepositorySpec:
    input_size: tuple[int, int]
    class_names: list[str]
    score_threshold: float
    iou_threshold: float
    name: str = "damo_yolo"
    resize: str = "stretch"
    pad_value: float = 0.0
    max_detections: int = C.MAX_DETECTIONS
    target: str = "cpu"
    preprocess: Optional[str] = None  # default: dali on the GPU target, opencv on the CPU target
    max_batch_size: int = 8
    dynamic_batching: bool = True
    preferred_batch_sizes: tuple[int, ...] = (4, 8)
    max_queue_delay_us: int = 500  # measured: 2000 µs cost ~5 ms at concurrency 1 for no throughput gain
    detector_instances: int = 1
    preprocess_instances: int = 2
    postprocess_instances: int = 1
    extra: dict = field(default_factory=dict)  # recorded in export.json (checkpoint hash, versions, ...)

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; choose {' or '.join(TARGETS)}")
        if self.preprocess is None:
            self.preprocess = "dali" if self.target == "gpu" else "opencv"
        if self.preprocess not in PREPROCESSORS:
            raise ValueError(f"unknown preprocess {self.preprocess!r}; choose {' or '.join(PREPROCESSORS)}")
        if self.max_batch_size < 1 or any(b < 1 or b > self.max_batch_size for b in self.preferred_batch_sizes):
            raise ValueError("preferred batch sizes must lie in 1..max_batch_size")
        if not self.class_names:
            raise ValueError("class_names must not be empty")

    @property
    def dali_backend(self) -> bool:
        """Preprocessing in Triton's DALI backend (model.dali): the GPU target with DALI. The CPU target's DALI
        runs in a python-backend model (the bundled server has no DALI backend)."""
        return self.target == "gpu" and self.preprocess == "dali"

    @property
    def image_input(self) -> C.TensorSpec:
        return C.IMAGE_ENCODED if self.dali_backend else C.IMAGE

    @property
    def model_names(self) -> dict[str, str]:
        return step_names(self.name)


def _pb():
    from tritonclient.grpc import model_config_pb2
    return model_config_pb2


def _tensor(message_cls, spec: C.TensorSpec, sizes: dict, label_filename: str = ""):
    """A ModelInput/ModelOutput message of a contract tensor (``sizes`` fill its symbolic dims)."""
    tensor = message_cls(name=spec.name, data_type=getattr(_pb(), spec.config_type), dims=spec.shape(**sizes))
    if spec.optional and message_cls is _pb().ModelInput:
        tensor.optional = True
    if label_filename:
        tensor.label_filename = label_filename
    return tensor


def _params(config, values: dict) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def _batching(spec: RepositorySpec, config) -> None:
    if not spec.dynamic_batching:
        return
    config.dynamic_batching.preferred_batch_size.extend(spec.preferred_batch_sizes)
    config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us


SUMMARY_KEYS = ("variant", "precision", "tensorrt", "gpu", "container")  # from the export record, when present


def export_summary(spec: RepositorySpec) -> dict:
    """What a served repository says about itself (the ensemble's ``export`` parameter): damo_yolo release,
    target, and for the GPU target the TensorRT version and the GPU the plan was built on."""
    summary = {"damo_yolo": __version__, "target": spec.target}
    summary.update({k: spec.extra[k] for k in SUMMARY_KEYS if k in spec.extra})
    return summary


def repository_summary(repo_dir, name: str = "damo_yolo") -> dict:
    """The ``export`` account of a written repository's ensemble ({} for repositories without one)."""
    path = Path(repo_dir) / name / "config.pbtxt"
    config = parse_config(path.read_text()) if path.is_file() else None
    if config is None or "export" not in config.parameters:
        return {}
    return json.loads(config.parameters["export"].string_value)


def model_configs(spec: RepositorySpec, num_priors: int) -> dict:
    """name → ModelConfig of every model of the repository."""
    pb = _pb()
    In, Out = pb.ModelInput, pb.ModelOutput
    names = spec.model_names
    h, w = spec.input_size
    sizes = dict(H=h, W=w, N=num_priors, C=len(spec.class_names), K=spec.max_detections)
    kind = pb.ModelInstanceGroup.KIND_CPU if spec.target == "cpu" else pb.ModelInstanceGroup.KIND_GPU

    pre = pb.ModelConfig(name=names["preprocess"], max_batch_size=spec.max_batch_size)
    pre.input.append(_tensor(In, spec.image_input, sizes))
    pre.output.extend(_tensor(Out, t, sizes) for t in C.PREPROCESS_OUTPUTS)
    if spec.dali_backend:  # model.dali: nvJPEG decode + GPU resize; images of different lengths batch raggedly
        pre.backend = "dali"
        pre.input[0].allow_ragged_batch = True
    else:  # python backend: OpenCV, or DALI's CPU operators on the CPU target
        pre.backend = "python"
        _params(pre, {"input_height": h, "input_width": w, "resize": spec.resize, "pad_value": spec.pad_value,
                      VERSION_PARAMETER: __version__})
    pre_kind = kind if spec.dali_backend else pb.ModelInstanceGroup.KIND_CPU
    pre.instance_group.append(pb.ModelInstanceGroup(kind=pre_kind, count=spec.preprocess_instances))
    _batching(spec, pre)

    det = pb.ModelConfig(name=names["detector"], max_batch_size=spec.max_batch_size)
    if spec.target == "cpu":
        det.backend = "python"
        _params(det, {"onnx_file": "model.onnx", VERSION_PARAMETER: __version__})
    else:
        det.platform = "tensorrt_plan"
    det.input.append(_tensor(In, C.MODEL_INPUT, sizes))
    det_outputs = (C.MODEL_SCORES, C.MODEL_BOXES) if spec.target == "cpu" else C.END2END_OUTPUTS
    det.output.extend(_tensor(Out, t, sizes) for t in det_outputs)
    det.instance_group.append(pb.ModelInstanceGroup(kind=kind, count=spec.detector_instances))
    _batching(spec, det)

    # CPU target: score filter + NMS + map-back; GPU target: map-back only (the plan's EfficientNMS did the rest)
    post = pb.ModelConfig(name=names["postprocess"], backend="python", max_batch_size=spec.max_batch_size)
    post.input.extend(_tensor(In, t, sizes) for t in (C.POSTPROCESS_INPUTS if spec.target == "cpu"
                                                      else C.MAPBACK_INPUTS))
    post.output.extend(_tensor(Out, t, sizes) for t in C.ENSEMBLE_OUTPUTS)
    post.instance_group.append(pb.ModelInstanceGroup(kind=pb.ModelInstanceGroup.KIND_CPU,
                                                     count=spec.postprocess_instances))
    _params(post, {"score_threshold": spec.score_threshold, "iou_threshold": spec.iou_threshold,
                   "max_detections": spec.max_detections, VERSION_PARAMETER: __version__})
    _batching(spec, post)

    ens = pb.ModelConfig(name=spec.name, platform="ensemble", max_batch_size=spec.max_batch_size)
    ens.input.extend(_tensor(In, spec.image_input if t is C.IMAGE else t, sizes) for t in C.ENSEMBLE_INPUTS)
    ens.output.extend(_tensor(Out, t, sizes, label_filename="labels.txt" if t is C.CLASSES else "")
                      for t in C.ENSEMBLE_OUTPUTS)
    _params(ens, {"class_names": json.dumps(spec.class_names),  # what clients read to name the classes
                  "export": json.dumps(export_summary(spec))})  # and what they report about the models
    if spec.target == "cpu":
        detections = {C.MODEL_SCORES.name: "_raw_scores", C.MODEL_BOXES.name: "_raw_boxes"}
        post_reads = {C.RAW_SCORES.name: "_raw_scores", C.RAW_BOXES.name: "_raw_boxes"}
    else:
        detections = {t.name: f"_{t.name}" for t in C.END2END_OUTPUTS}
        post_reads = dict(detections)
    thresholds = {t.name: t.name for t in (C.SCORE_THRESHOLD, C.IOU_THRESHOLD)}
    steps = [
        (names["preprocess"], {C.IMAGE.name: C.IMAGE.name},
         {t.name: f"_{t.name.lower()}" for t in C.PREPROCESS_OUTPUTS}),
        (names["detector"], {C.MODEL_INPUT.name: f"_{C.MODEL_INPUT.name.lower()}"}, detections),
        (names["postprocess"], {**post_reads, C.SCALE.name: "_scale", C.ORIG_SIZE.name: "_orig_size", **thresholds},
         {t.name: t.name for t in C.ENSEMBLE_OUTPUTS}),
    ]
    for model_name, inputs, outputs in steps:
        step = ens.ensemble_scheduling.step.add(model_name=model_name, model_version=-1)
        step.input_map.update(inputs)
        step.output_map.update(outputs)
    return {cfg.name: cfg for cfg in (ens, pre, det, post)}


def config_text(config) -> str:
    from google.protobuf import text_format
    return text_format.MessageToString(config)


def parse_config(text: str):
    """Parse config.pbtxt text with Triton's ModelConfig schema (raises on any unknown field)."""
    from google.protobuf import text_format
    return text_format.Parse(text, _pb().ModelConfig())


def _write_model_py(model_dir: Path, module: str) -> None:
    """The python-backend model.py: the model class imported from the installed package (one definition)."""
    if not (TEMPLATES / f"{module}.py").is_file():
        raise FileNotFoundError(TEMPLATES / f"{module}.py")
    (model_dir / "1" / "model.py").write_text(
        f'"""Written by damo-export: {module.replace("_", " ")} model of the DAMO-YOLO ensemble; the code is the '
        f'installed damo_yolo package\'s."""\n'
        f"from damo_yolo.deploy.triton.{module} import TritonPythonModel  # noqa: F401\n")


def write_repository(spec: RepositorySpec, out_dir, num_priors: int, onnx_path: Optional[Path] = None,
                     plan_path: Optional[Path] = None, dali_path: Optional[Path] = None) -> Path:
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
    if spec.dali_backend:
        if dali_path is not None:
            shutil.copy2(dali_path, out / names["preprocess"] / "1" / "model.dali")
    else:
        _write_model_py(out / names["preprocess"], "preprocess_dali" if spec.preprocess == "dali" else "preprocess")
    _write_model_py(out / names["postprocess"], "postprocess" if spec.target == "cpu" else "mapback")
    if spec.target == "cpu":
        if onnx_path is None:
            raise ValueError("the CPU target needs the detector's ONNX graph")
        _write_model_py(out / names["detector"], "detector_onnxruntime")
        shutil.copy2(onnx_path, out / names["detector"] / "1" / "model.onnx")
    elif plan_path is not None:
        shutil.copy2(plan_path, out / names["detector"] / "1" / "model.plan")
    # the ensemble's version folder holds nothing, and git keeps no empty folder
    (out / spec.name / "1" / ".keep").write_text("the ensemble's version 1 (Triton needs the folder)\n")
    (out / spec.name / "labels.txt").write_text("\n".join(spec.class_names) + "\n")
    record = {k: v for k, v in asdict(spec).items() if k != "extra"}
    record.update(spec.extra, models=list(configs), num_priors=num_priors)
    (out / spec.name / "export.json").write_text(json.dumps(record, indent=2) + "\n")
    validate_repository(out, spec.name, require_artifacts=spec.target == "cpu" or (
        plan_path is not None and (dali_path is not None or not spec.dali_backend)))
    return out


def validate_repository(repo_dir, name: str = "damo_yolo", require_artifacts: bool = True) -> list:
    """Check an ensemble's wiring the way Triton will at load time; returns the parsed step configs.

    Every config parses; each step's mapped inputs and outputs exist on its model; every required input
    is fed; each tensor passed between steps has the same type and shape on both sides; the model
    files each backend loads are present. Raises ValueError listing every problem found.
    """
    repo = Path(repo_dir)
    problems = []

    def load(model):
        path = repo / model / "config.pbtxt"
        if not path.is_file():
            problems.append(f"{model}: no config.pbtxt")
            return None
        return parse_config(path.read_text())

    ens = load(name)
    if ens is None:
        raise ValueError("; ".join(problems))
    known = {t.name: (t.data_type, list(t.dims)) for t in ens.input}  # tensor name → (type, dims)
    steps = []
    for step in ens.ensemble_scheduling.step:
        config = load(step.model_name)
        if config is None:
            continue
        steps.append(config)
        inputs = {t.name: (t.data_type, list(t.dims)) for t in config.input}
        outputs = {t.name: (t.data_type, list(t.dims)) for t in config.output}
        for model_input, tensor in step.input_map.items():
            if model_input not in inputs:
                problems.append(f"{config.name}: no input {model_input!r}")
            elif tensor not in known:
                problems.append(f"{config.name}: input {model_input!r} reads {tensor!r}, which nothing produces")
            elif known[tensor] != inputs[model_input]:
                problems.append(f"{config.name}: input {model_input!r} is {inputs[model_input]}, "
                                f"but {tensor!r} is {known[tensor]}")
        for t in config.input:
            if not t.optional and t.name not in step.input_map:
                problems.append(f"{config.name}: required input {t.name!r} is not fed")
        for model_output, tensor in step.output_map.items():
            if model_output not in outputs:
                problems.append(f"{config.name}: no output {model_output!r}")
            else:
                known[tensor] = outputs[model_output]
        if config.max_batch_size < ens.max_batch_size:
            problems.append(f"{config.name}: max_batch_size {config.max_batch_size} < the ensemble's")
        if require_artifacts:
            version = repo / config.name / "1"
            artifact = ("model.plan" if config.platform == "tensorrt_plan"
                        else "model.dali" if config.backend == "dali" else "model.py")
            if not (version / artifact).is_file():
                problems.append(f"{config.name}: missing 1/{artifact}")
            onnx_file = config.parameters["onnx_file"].string_value if "onnx_file" in config.parameters else ""
            if onnx_file and not (version / onnx_file).is_file():
                problems.append(f"{config.name}: missing 1/{onnx_file}")
    for t in ens.output:
        if t.name not in known:
            problems.append(f"{name}: output {t.name!r} is produced by no step")
        elif known[t.name] != (t.data_type, list(t.dims)):
            problems.append(f"{name}: output {t.name!r} is {(t.data_type, list(t.dims))}, steps give {known[t.name]}")
    labels = [t.label_filename for t in ens.output if t.label_filename]
    if require_artifacts and labels and not (repo / name / labels[0]).is_file():
        problems.append(f"{name}: missing {labels[0]}")
    if problems:
        raise ValueError(f"model repository {repo} ({name}): " + "; ".join(problems))
    return steps


def main(argv: Optional[list] = None) -> int:
    """``python -m damo_yolo.deploy.repository REPO [--name damo_yolo]``: check a repository's wiring, say what
    built it, and warn when its plan will not load in the serving container."""
    import argparse
    import sys
    parser = argparse.ArgumentParser(prog="python -m damo_yolo.deploy.repository", description=main.__doc__)
    parser.add_argument("repo", type=Path, help="model repository folder")
    parser.add_argument("--name", default="damo_yolo", help="the ensemble's name")
    args = parser.parse_args(argv)
    try:
        steps = validate_repository(args.repo, args.name)
    except ValueError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    summary = repository_summary(args.repo, args.name)
    print(f"{args.repo}: {args.name} → {' → '.join(s.name for s in steps)}; "
          + ", ".join(f"{k} {v}" for k, v in summary.items() if not isinstance(v, dict))
          + (f", GPU {summary['gpu']['name']} (compute {summary['gpu']['compute_capability']})" if "gpu" in summary
             else ""))
    for warning in platform_warnings(summary):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
