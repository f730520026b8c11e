"""The Triton model repository, generated from one checkpoint's metadata.

CPU target: one python-backend model ``<name>`` that decodes, runs the detector in onnxruntime or OpenVINO and
post-processes (damo_yolo.serving.cpu_pipeline). GPU target: an ensemble ``<name>`` over ``<name>_preprocess``
(DALI backend) → ``<name>_detector`` (TensorRT plan with EfficientNMS) → ``<name>_postprocess`` (map-back).
Clients see the same model either way: ``<name>`` with the contract's inputs and outputs.

Every ``config.pbtxt`` is built as Triton's ``ModelConfig`` protobuf message and written in its text
format, so a config that would not parse cannot be written. Tensor names, types and dims come from the
serving contract (damo_yolo.contract), the same on both targets.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from .. import __version__
from .. import contract as C
from .platform import platform_warnings
from .release import VERSION_PARAMETER

TARGETS = ("cpu", "gpu")
PREPROCESSORS = ("opencv", "dali")  # CPU: OpenCV or DALI's CPU operators in the python model; GPU: DALI backend
TEMPLATES = Path(__file__).resolve().parent / "triton"


def step_names(name: str) -> dict[str, str]:
    """The models behind the GPU target's ensemble ``name``: step → model name (also the CPU target's former
    layout, which a CPU export replaces)."""
    return {step: f"{name}_{step}" for step in ("preprocess", "detector", "postprocess")}


@dataclass
class RepositorySpec:
    """A repository to write: the served model's configuration and how Triton runs it."""
    serving: C.ServingConfig
    name: str = "damo_yolo"
    target: str = "cpu"
    max_batch_size: int = 8
    dynamic_batching: bool = True
    preferred_batch_sizes: tuple[int, ...] = (4, 8)
    max_queue_delay_us: int = 0  # a batch is what queued while the model was busy; waiting costs latency
    detector_instances: int = 1  # GPU: plan instances
    cpu_instances: int = 2  # CPU: instances of the one model (measured: perf/results/benchmark.md)
    preprocess_instances: int = 1  # GPU: the DALI backend advises its default single instance (memory)
    postprocess_instances: int = 1
    extra: dict = field(default_factory=dict)  # the export's record (checkpoint hash, versions, ...)

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; choose {' or '.join(TARGETS)}")
        if self.target == "gpu":
            if self.serving.decoder != "dali":
                raise ValueError("the GPU target decodes and resizes in Triton's DALI backend (--preprocess dali)")
            if self.serving.plan_score_threshold is None:  # the plan's NMS keeps what the served default keeps
                self.serving = replace(self.serving, plan_score_threshold=self.serving.score_threshold)
        elif self.serving.plan_score_threshold is not None:
            raise ValueError("the CPU target has no TensorRT plan (plan_score_threshold is for the GPU target)")
        if self.max_batch_size < 1 or any(b < 1 or b > self.max_batch_size for b in self.preferred_batch_sizes):
            raise ValueError("preferred batch sizes must lie in 1..max_batch_size")

    @property
    def dali_backend(self) -> bool:
        """Preprocessing in Triton's DALI backend (model.dali): the GPU target. The CPU target's DALI runs
        inside its python-backend model (the bundled server has no DALI backend)."""
        return self.target == "gpu"

    @property
    def takes_pixels(self) -> bool:
        """Decoded frames (PIXELS) are taken beside encoded images by the CPU target's OpenCV preprocessing; the
        GPU target decodes JPEG on the GPU, where raw pixels would only add bytes to move."""
        return self.target == "cpu" and self.serving.decoder == "opencv"

    @property
    def image_input(self) -> C.TensorSpec:
        return C.IMAGE_ENCODED if self.dali_backend else C.IMAGE


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
    """Dynamic batching, and the queue policy that honours a request's own ``timeout``: a request still queued
    when its deadline passes is rejected without running (clients set it from their own timeout). Without
    dynamic batching Triton has no queue policy: requests wait for an instance however long."""
    if not spec.dynamic_batching:
        return
    config.dynamic_batching.preferred_batch_size.extend(spec.preferred_batch_sizes)
    config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    config.dynamic_batching.default_queue_policy.CopyFrom(
        _pb().ModelQueuePolicy(timeout_action=_pb().ModelQueuePolicy.REJECT, allow_timeout_override=True))


def export_summary(spec: RepositorySpec) -> dict:
    """What a served repository says of how it was made (the client-facing model's ``export`` parameter):
    damo_yolo release, target, and the export's record (checkpoint, variant, versions; for the GPU target the
    TensorRT version and the GPU the plan was built on)."""
    return {"damo_yolo": __version__, "target": spec.target, **spec.extra}


def _client_facing_parameters(repo_dir, name: str) -> dict:
    path = Path(repo_dir) / name / "config.pbtxt"
    if not path.is_file():
        raise ValueError(f"{repo_dir} holds no model {name!r} (no {name}/config.pbtxt)")
    return {k: v.string_value for k, v in parse_config(path.read_text()).parameters.items()}


def repository_summary(repo_dir, name: str = "damo_yolo") -> dict:
    """The ``export`` record of a written repository's client-facing model ({} when it has none)."""
    export = _client_facing_parameters(repo_dir, name).get("export")
    return json.loads(export) if export else {}


def repository_serving(repo_dir, name: str = "damo_yolo") -> C.ServingConfig:
    """The serving configuration of a written repository's client-facing model."""
    return C.ServingConfig.from_parameters(_client_facing_parameters(repo_dir, name))


def model_configs(spec: RepositorySpec, num_priors: int) -> dict:
    """name → ModelConfig of every model of the repository."""
    h, w = spec.serving.input_size
    sizes = dict(H=h, W=w, N=num_priors, C=len(spec.serving.class_names), K=spec.serving.max_detections)
    return _cpu_configs(spec, sizes) if spec.target == "cpu" else _gpu_configs(spec, sizes)


def _client_facing(spec: RepositorySpec, config, sizes: dict) -> None:
    """The contract's inputs and outputs, and what clients read: the serving configuration and the export's
    record."""
    pb = _pb()
    config.input.extend(_tensor(pb.ModelInput, spec.image_input if t is C.IMAGE else t, sizes)
                        for t in C.ENSEMBLE_INPUTS)
    if spec.takes_pixels:  # IMAGE or PIXELS, one of them per request; frames of any size batch together
        config.input[0].optional = True
        config.input.append(_tensor(pb.ModelInput, C.PIXELS, sizes))
        config.input[-1].allow_ragged_batch = True
    config.output.extend(_tensor(pb.ModelOutput, t, sizes, label_filename="labels.txt" if t is C.CLASSES else "")
                         for t in C.ENSEMBLE_OUTPUTS)
    _params(config, {**spec.serving.to_parameters(), "export": json.dumps(export_summary(spec))})


def _cpu_configs(spec: RepositorySpec, sizes: dict) -> dict:
    """One python-backend model: decode, detector (onnxruntime or OpenVINO), NMS (triton/pipeline.py)."""
    pb = _pb()
    config = pb.ModelConfig(name=spec.name, backend="python", max_batch_size=spec.max_batch_size)
    _client_facing(spec, config, sizes)
    _params(config, {VERSION_PARAMETER: __version__})
    config.instance_group.append(pb.ModelInstanceGroup(kind=pb.ModelInstanceGroup.KIND_CPU,
                                                       count=spec.cpu_instances))
    _batching(spec, config)
    return {spec.name: config}


def _gpu_configs(spec: RepositorySpec, sizes: dict) -> dict:
    """The ensemble: DALI-backend preprocess → TensorRT plan with EfficientNMS → python map-back."""
    pb = _pb()
    In, Out = pb.ModelInput, pb.ModelOutput
    names = step_names(spec.name)
    gpu, cpu = pb.ModelInstanceGroup.KIND_GPU, pb.ModelInstanceGroup.KIND_CPU

    pre = pb.ModelConfig(name=names["preprocess"], max_batch_size=spec.max_batch_size, backend="dali")
    pre.input.append(_tensor(In, spec.image_input, sizes))
    pre.output.extend(_tensor(Out, t, sizes) for t in C.PREPROCESS_OUTPUTS)
    pre.input[0].allow_ragged_batch = True  # model.dali: nvJPEG decode + GPU resize; images of any length batch
    pre.instance_group.append(pb.ModelInstanceGroup(kind=gpu, count=spec.preprocess_instances))
    _batching(spec, pre)

    det = pb.ModelConfig(name=names["detector"], max_batch_size=spec.max_batch_size, platform="tensorrt_plan")
    det.input.append(_tensor(In, C.MODEL_INPUT, sizes))
    det.output.extend(_tensor(Out, t, sizes) for t in C.END2END_OUTPUTS)
    det.instance_group.append(pb.ModelInstanceGroup(kind=gpu, count=spec.detector_instances))
    _batching(spec, det)

    post = pb.ModelConfig(name=names["postprocess"], backend="python", max_batch_size=spec.max_batch_size)
    post.input.extend(_tensor(In, t, sizes) for t in C.MAPBACK_INPUTS)
    post.output.extend(_tensor(Out, t, sizes) for t in C.ENSEMBLE_OUTPUTS)
    post.instance_group.append(pb.ModelInstanceGroup(kind=cpu, count=spec.postprocess_instances))
    _params(post, {**spec.serving.to_parameters(), VERSION_PARAMETER: __version__})
    _batching(spec, post)

    ens = pb.ModelConfig(name=spec.name, platform="ensemble", max_batch_size=spec.max_batch_size)
    _client_facing(spec, ens, sizes)
    detections = {t.name: f"_{t.name}" for t in C.END2END_OUTPUTS}
    thresholds = {t.name: t.name for t in (C.SCORE_THRESHOLD, C.IOU_THRESHOLD)}
    steps = [
        (names["preprocess"], {C.IMAGE.name: C.IMAGE.name},
         {t.name: f"_{t.name.lower()}" for t in C.PREPROCESS_OUTPUTS}),
        (names["detector"], {C.MODEL_INPUT.name: f"_{C.MODEL_INPUT.name.lower()}"}, detections),
        (names["postprocess"], {**detections, C.SCALE.name: "_scale", C.ORIG_SIZE.name: "_orig_size", **thresholds},
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
        f'"""Written by damo-export: the {module.replace("_", " ")} model of this DAMO-YOLO repository;\n'
        f'the code is the installed damo_yolo package\'s."""\n'
        f"from damo_yolo.serving.triton.{module} import TritonPythonModel  # noqa: F401\n")


def write_repository(spec: RepositorySpec, out_dir, num_priors: int, onnx_path: Optional[Path] = None,
                     plan_path: Optional[Path] = None, dali_path: Optional[Path] = None) -> Path:
    """Write (or update) the models of ``spec`` under ``out_dir``; other models there are left alone, except the
    models a former export of the same name wrote in another layout (they would shadow or break this one)."""
    out = Path(out_dir)
    names = step_names(spec.name)
    configs = model_configs(spec, num_priors)
    for name in {spec.name, *names.values()}:
        if (out / name).exists():
            shutil.rmtree(out / name)
    for name, config in configs.items():
        (out / name / "1").mkdir(parents=True)
        (out / name / "config.pbtxt").write_text(config_text(config))
    if spec.target == "cpu":
        if onnx_path is None:
            raise ValueError("the CPU target needs the detector's ONNX graph")
        _write_model_py(out / spec.name, "pipeline")
        shutil.copy2(onnx_path, out / spec.name / "1" / spec.serving.model_file)
    else:
        if dali_path is not None:
            shutil.copy2(dali_path, out / names["preprocess"] / "1" / "model.dali")
        if plan_path is not None:
            shutil.copy2(plan_path, out / names["detector"] / "1" / "model.plan")
        _write_model_py(out / names["postprocess"], "mapback")
        # the ensemble's version folder holds nothing, and git keeps no empty folder
        (out / spec.name / "1" / ".keep").write_text("the ensemble's version 1 (Triton needs the folder)\n")
    (out / spec.name / "labels.txt").write_text("\n".join(spec.serving.class_names) + "\n")
    validate_repository(out, spec.name, require_artifacts=spec.target == "cpu" or (
        plan_path is not None and dali_path is not None))
    return out


def serving_of(config) -> C.ServingConfig:
    """The serving configuration a parsed model config's parameters hold."""
    return C.ServingConfig.from_parameters({k: v.string_value for k, v in config.parameters.items()})


def _serving_problems(config) -> list:
    """What is wrong with the serving configuration a model's parameters hold ([] when it is valid)."""
    try:
        serving_of(config)
    except (ValueError, TypeError) as exc:
        return [f"{config.name}: {exc}"]
    return []


def _missing_files(repo: Path, config) -> list:
    """The files a model's backend loads that its version folder lacks."""
    version = repo / config.name / "1"
    artifact = ("model.plan" if config.platform == "tensorrt_plan"
                else "model.dali" if config.backend == "dali" else "model.py")
    return [] if (version / artifact).is_file() else [f"{config.name}: missing 1/{artifact}"]


def _ensemble_steps(repo: Path, ens, load, problems: list, require_artifacts: bool) -> list:
    """The configs of an ensemble's steps, appending to ``problems`` what is wrong with its wiring (see
    validate_repository)."""
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
            problems.extend(_missing_files(repo, config))
        if config.name == step_names(ens.name)["postprocess"]:
            problems.extend(_serving_problems(config))
    for t in ens.output:
        if t.name not in known:
            problems.append(f"{ens.name}: output {t.name!r} is produced by no step")
        elif known[t.name] != (t.data_type, list(t.dims)):
            problems.append(f"{ens.name}: output {t.name!r} is {(t.data_type, list(t.dims))}, "
                            f"steps give {known[t.name]}")
    return steps


def validate_repository(repo_dir, name: str = "damo_yolo", require_artifacts: bool = True) -> list:
    """Check a repository the way Triton will at load time; returns the parsed configs of the models behind
    ``name`` (the ensemble's steps, or the one CPU model).

    Every config parses; the model clients call has the contract's inputs and outputs and, with every python
    model, a valid serving configuration (damo_yolo.contract.ServingConfig); for an ensemble, each
    step's mapped inputs and outputs exist on its model, every required input is fed, each tensor passed
    between steps has the same type and shape on both sides; the model files each backend loads are present.
    Raises ValueError listing every problem found.
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
    pb = _pb()
    for specs, tensors, kind in ((C.ENSEMBLE_INPUTS, ens.input, "input"), (C.ENSEMBLE_OUTPUTS, ens.output, "output")):
        types = {t.name: t.data_type for t in tensors}
        for t in specs:
            allowed = {getattr(pb, t.config_type)} | ({pb.TYPE_UINT8} if t is C.IMAGE else set())
            if types.get(t.name) not in allowed:
                problems.append(f"{name}: {kind} {t.name!r} is missing or not {t.config_type}")
    if ens.platform == "ensemble":
        steps = _ensemble_steps(repo, ens, load, problems, require_artifacts)
    else:  # the CPU target's one model, which also loads the detector's graph
        steps = [ens]
        if require_artifacts:
            problems.extend(_missing_files(repo, ens))
            model_file = ens.parameters["model_file"].string_value if "model_file" in ens.parameters else ""
            if model_file and not (repo / name / "1" / model_file).is_file():
                problems.append(f"{name}: missing 1/{model_file}")
    problems.extend(_serving_problems(ens))
    labels = [t.label_filename for t in ens.output if t.label_filename]
    if require_artifacts and labels and not (repo / name / labels[0]).is_file():
        problems.append(f"{name}: missing {labels[0]}")
    if problems:
        raise ValueError(f"model repository {repo} ({name}): " + "; ".join(problems))
    return steps


def with_served_defaults(repo_dir, out_dir, name: str = "damo_yolo", score_threshold: Optional[float] = None,
                         iou_threshold: Optional[float] = None) -> Path:
    """A copy of a repository whose served default thresholds are changed (what the container entrypoint does
    with SCORE_THRESHOLD / IOU_THRESHOLD): every model holding the serving configuration gets the new one. The
    CPU model applies any; the GPU ensemble's score default must stay at or above its plan's NMS threshold and
    its IoU cannot change (the NMS runs inside the plan): ``ServingConfig.with_defaults`` refuses those."""
    repo, out = Path(repo_dir), Path(out_dir)
    steps = validate_repository(repo, name)
    holders = [name] + [s.name for s in steps if s.name == step_names(name)["postprocess"]]
    changed = {}
    for model in holders:
        config = parse_config((repo / model / "config.pbtxt").read_text())
        _params(config, serving_of(config).with_defaults(score_threshold, iou_threshold).to_parameters())
        changed[model] = config
    shutil.copytree(repo, out, symlinks=True)
    for model, config in changed.items():
        (out / model / "config.pbtxt").write_text(config_text(config))
    return out


def main(argv: Optional[list] = None) -> int:
    """``python -m damo_yolo.serving.repository REPO [--name damo_yolo]``: check a repository's wiring, say what
    built it, and warn when its plan will not load in the serving container."""
    import argparse
    import sys
    parser = argparse.ArgumentParser(prog="python -m damo_yolo.serving.repository", description=main.__doc__)
    parser.add_argument("repo", type=Path, help="model repository folder")
    parser.add_argument("--name", default="damo_yolo", help="the model clients call")
    parser.add_argument("--score-threshold", type=float, help="with --out: the served default score threshold")
    parser.add_argument("--iou-threshold", type=float, help="with --out: the served default NMS IoU")
    parser.add_argument("--out", type=Path, help="write a copy with the served defaults given, and check that")
    args = parser.parse_args(argv)
    try:
        if args.out is not None:
            args.repo = with_served_defaults(args.repo, args.out, args.name, args.score_threshold, args.iou_threshold)
        elif args.score_threshold is not None or args.iou_threshold is not None:
            parser.error("--score-threshold / --iou-threshold need --out (the repository itself is left alone)")
        steps = validate_repository(args.repo, args.name)
    except (ValueError, FileExistsError) as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    summary, serving = repository_summary(args.repo, args.name), repository_serving(args.repo, args.name)
    layout = " → ".join(s.name for s in steps) if steps[0].name != args.name else "one python model"
    made = [f"{k} {summary[k]}" for k in ("damo_yolo", "target", "variant", "tensorrt") if k in summary]
    if "gpu" in summary:
        made.append(f"GPU {summary['gpu']['name']} (compute {summary['gpu']['compute_capability']})")
    print(f"{args.repo}: {args.name} → {layout}; {', '.join(made)}; serves {serving.summary()}")
    for warning in platform_warnings(summary):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
