"""Generated model repositories: every config.pbtxt parses against Triton's ModelConfig, for both targets; the
CPU target's one model and the GPU target's ensemble both show clients the contract of design.md."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from damo_yolo.contract import ServingConfig
from damo_yolo.serving.repository import (
    RepositorySpec,
    config_text,
    model_configs,
    parse_config,
    validate_repository,
    write_repository,
)

SERVING = ServingConfig(input_size=(256, 320), class_names=("disc", "square", "star"), score_threshold=0.03,
                        iou_threshold=0.65, max_detections=50)


def _spec(target: str = "cpu", serving: ServingConfig = SERVING, **kwargs) -> RepositorySpec:
    """A repository of SERVING; the GPU target decodes with DALI."""
    return RepositorySpec(replace(serving, decoder="dali") if target == "gpu" else serving, target=target, **kwargs)


def test_cpu_repository_is_one_model_with_the_contract(tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"graph")
    repo = write_repository(_spec(), tmp_path / "repo", num_priors=1680, onnx_path=onnx)
    assert sorted(p.name for p in repo.iterdir()) == ["damo_yolo"]
    config = parse_config((repo / "damo_yolo" / "config.pbtxt").read_text())
    from tritonclient.grpc import model_config_pb2 as pb
    assert config.backend == "python" and config.max_batch_size == 8
    assert "triton.pipeline import" in (repo / "damo_yolo" / "1" / "model.py").read_text()
    assert (repo / "damo_yolo" / "1" / "model.onnx").read_bytes() == b"graph"
    inputs = {i.name: (i.data_type, list(i.dims), i.optional) for i in config.input}
    # IMAGE (encoded) or PIXELS (decoded BGR, frames of any size batched together): one of them per request
    assert inputs == {"IMAGE": (pb.TYPE_STRING, [1], True), "PIXELS": (pb.TYPE_UINT8, [-1, -1, 3], True),
                      "SCORE_THRESHOLD": (pb.TYPE_FP32, [1], True), "IOU_THRESHOLD": (pb.TYPE_FP32, [1], True)}
    assert [i.allow_ragged_batch for i in config.input if i.name == "PIXELS"] == [True]
    outputs = {o.name: (o.data_type, list(o.dims)) for o in config.output}
    assert outputs == {"num_detections": (pb.TYPE_INT32, [1]), "boxes": (pb.TYPE_FP32, [50, 4]),
                       "scores": (pb.TYPE_FP32, [50]), "classes": (pb.TYPE_INT32, [50])}
    assert [o.label_filename for o in config.output if o.name == "classes"] == ["labels.txt"]
    assert (repo / "damo_yolo" / "labels.txt").read_text().split() == list(SERVING.class_names)
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert (params["score_threshold"], params["iou_threshold"], params["max_detections"]) == ("0.03", "0.65", "50")
    assert ServingConfig.from_parameters(params) == SERVING and params["decoder"] == "opencv"
    assert json.loads(params["export"])["target"] == "cpu"
    # a batch is what queued while the model was busy (no added wait); a request's own timeout is honoured
    assert (config.instance_group[0].kind, config.instance_group[0].count) == (pb.ModelInstanceGroup.KIND_CPU, 2)
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    policy = config.dynamic_batching.default_queue_policy
    assert policy.allow_timeout_override and policy.timeout_action == pb.ModelQueuePolicy.REJECT
    assert not (repo / "damo_yolo" / "export.json").exists()  # the parameters are the one record
    assert [s.name for s in validate_repository(repo)] == ["damo_yolo"]


def test_cpu_export_replaces_the_former_three_step_layout(tmp_path):
    repo = tmp_path / "repo"
    for name in ("damo_yolo_preprocess", "damo_yolo_detector", "damo_yolo_postprocess", "other_model"):
        (repo / name / "1").mkdir(parents=True)
    _cpu_repo(tmp_path)
    assert sorted(p.name for p in repo.iterdir()) == ["damo_yolo", "other_model"]


def test_gpu_ensemble_contract():
    configs = model_configs(_spec("gpu"), num_priors=1680)
    ens = configs["damo_yolo"]
    assert ens.platform == "ensemble"
    steps = [s.model_name for s in ens.ensemble_scheduling.step]
    assert steps == ["damo_yolo_preprocess", "damo_yolo_detector", "damo_yolo_postprocess"]
    # every tensor a step reads is the ensemble's input or an earlier step's output
    available = {"IMAGE", "SCORE_THRESHOLD", "IOU_THRESHOLD"}
    for step in ens.ensemble_scheduling.step:
        assert set(step.input_map.values()) <= available, step.model_name
        available |= set(step.output_map.values())
    for name in steps:
        assert list(configs[name].dynamic_batching.preferred_batch_size) == [4, 8]


def test_gpu_repository_uses_a_tensorrt_plan(tmp_path):
    spec = _spec("gpu")
    repo = write_repository(spec, tmp_path / "repo", num_priors=1680)
    det = parse_config((repo / "damo_yolo_detector" / "config.pbtxt").read_text())
    from tritonclient.grpc import model_config_pb2 as pb
    assert det.platform == "tensorrt_plan" and det.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    # NMS inside the plan (EfficientNMS_TRT): the end2end outputs, then a map-back step
    assert [i.name for i in det.input] == ["images"]
    assert [(o.name, list(o.dims)) for o in det.output] == [("num_dets", [1]), ("det_boxes", [50, 4]),
                                                              ("det_scores", [50]), ("det_classes", [50])]
    ens = parse_config((repo / "damo_yolo" / "config.pbtxt").read_text())
    assert dict(ens.ensemble_scheduling.step[1].input_map) == {"images": "_images"}
    assert "triton.mapback import" in (repo / "damo_yolo_postprocess" / "1" / "model.py").read_text()
    # preprocessing on the GPU in Triton's DALI backend: encoded files as UINT8 [-1], batched raggedly
    pre = parse_config((repo / "damo_yolo_preprocess" / "config.pbtxt").read_text())
    assert pre.backend == "dali" and pre.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert pre.instance_group[0].count == 1  # the DALI backend's advice: one instance, DALI threads within it
    assert [(i.name, i.data_type, list(i.dims), i.allow_ragged_batch) for i in pre.input] == [
        ("IMAGE", pb.TYPE_UINT8, [-1], True)]
    assert [(i.name, i.data_type, list(i.dims)) for i in ens.input][0] == ("IMAGE", pb.TYPE_UINT8, [-1])
    assert not (repo / "damo_yolo_preprocess" / "1" / "model.py").exists()
    with pytest.raises(ValueError, match="missing 1/model.dali.*missing 1/model.plan"):
        validate_repository(repo)
    (repo / "damo_yolo_preprocess" / "1" / "model.dali").write_bytes(b"pipeline")
    (repo / "damo_yolo_detector" / "1" / "model.plan").write_bytes(b"engine")
    steps = validate_repository(repo)
    assert [s.name for s in steps] == ["damo_yolo_preprocess", "damo_yolo_detector", "damo_yolo_postprocess"]


def _cpu_repo(tmp_path, **kwargs):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"graph")
    return write_repository(_spec(**kwargs), tmp_path / "repo", num_priors=1680, onnx_path=onnx)


def test_cpu_target_with_dali_preprocessing(tmp_path):
    repo = _cpu_repo(tmp_path, serving=replace(SERVING, decoder="dali"))
    config = parse_config((repo / "damo_yolo" / "config.pbtxt").read_text())
    assert config.parameters["decoder"].string_value == "dali"


def _rewrite(path, edit):
    config = parse_config(path.read_text())
    edit(config)
    path.write_text(config_text(config))


def test_validation_finds_broken_wiring(tmp_path):
    repo = write_repository(_spec("gpu"), tmp_path / "repo", num_priors=1680)
    validate_repository(repo, require_artifacts=False)
    _rewrite(repo / "damo_yolo_detector" / "config.pbtxt", lambda c: c.input[0].dims.__setitem__(1, 320))
    with pytest.raises(ValueError, match="damo_yolo_detector: input 'images' is"):
        validate_repository(repo, require_artifacts=False)


def test_validation_finds_unfed_inputs_and_missing_files(tmp_path):
    repo = write_repository(_spec("gpu"), tmp_path / "repo", num_priors=1680)
    _rewrite(repo / "damo_yolo" / "config.pbtxt",
             lambda c: c.ensemble_scheduling.step[2].input_map.pop("SCALE"))
    with pytest.raises(ValueError) as info:
        validate_repository(repo)
    assert "required input 'SCALE' is not fed" in str(info.value) and "missing 1/model.plan" in str(info.value)
    cpu = _cpu_repo(tmp_path)
    (cpu / "damo_yolo" / "1" / "model.onnx").unlink()
    _rewrite(cpu / "damo_yolo" / "config.pbtxt", lambda c: c.output[1].__setattr__("data_type", 8))  # INT32
    with pytest.raises(ValueError) as info:
        validate_repository(cpu)
    assert "missing 1/model.onnx" in str(info.value) and "output 'boxes' is missing or not TYPE_FP32" in str(info.value)


def test_parse_rejects_unknown_fields():
    with pytest.raises(Exception):
        parse_config('name: "x" backend: "python" max_batch_sise: 8')


@pytest.mark.parametrize("kwargs,match", [(dict(target="tpu"), "unknown target"),
                                          (dict(preferred_batch_sizes=(16,)), "preferred batch sizes"),
                                          (dict(target="gpu"), "DALI backend"),
                                          (dict(serving=replace(SERVING, plan_score_threshold=0.01)),
                                           "CPU target has no TensorRT plan")])
def test_bad_specs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RepositorySpec(**{"serving": SERVING, **kwargs})


def test_the_gpu_plan_keeps_at_least_the_served_default():
    assert _spec("gpu").serving.plan_score_threshold == SERVING.score_threshold
    with pytest.raises(ValueError, match="below 0.1, the threshold of the NMS inside the TensorRT plan"):
        _spec("gpu", serving=replace(SERVING, plan_score_threshold=0.1))


def test_both_targets_show_clients_the_contract():
    from damo_yolo import __version__
    from damo_yolo import contract as C
    cpu, gpu = (model_configs(_spec(t), num_priors=1680) for t in ("cpu", "gpu"))
    for kind, specs in (("input", C.ENSEMBLE_INPUTS), ("output", C.ENSEMBLE_OUTPUTS)):
        extra = [C.PIXELS.name] if kind == "input" else []  # decoded frames: the CPU target only
        assert [t.name for t in getattr(cpu["damo_yolo"], kind)] == [t.name for t in specs] + extra
        assert [t.name for t in getattr(gpu["damo_yolo"], kind)] == [t.name for t in specs]
    for configs in (cpu, gpu):
        assert configs["damo_yolo"].parameters["max_detections"].string_value == "50"
    det, post = gpu["damo_yolo_detector"], gpu["damo_yolo_postprocess"]
    assert [t.name for t in det.input] == [C.MODEL_INPUT.name]
    assert [t.name for t in det.output] == [t.name for t in C.END2END_OUTPUTS]
    assert [t.name for t in post.input] == [t.name for t in C.MAPBACK_INPUTS]
    for config in (cpu["damo_yolo"], post):  # python backends
        assert config.parameters["damo_yolo_version"].string_value == __version__


def test_a_repository_of_another_release_is_refused():
    from damo_yolo.serving.release import check_version
    check_version("0.1.0", installed="0.1.7")  # patch releases read the same repositories
    check_version("", installed="0.2.0")  # repositories written before the check: nothing to compare
    with pytest.raises(RuntimeError, match=r"exported by damo_yolo 0.1.0, but damo_yolo 0.2.0 is installed.*"
                                           r"--force.*damo-yolo==0.1.\*"):
        check_version("0.1.0", installed="0.2.0")


def test_repository_says_what_built_it_and_warns_of_another_tensorrt(tmp_path):
    from damo_yolo.serving import platform
    from damo_yolo.serving.platform import platform_warnings
    from damo_yolo.serving.repository import repository_summary
    repo = write_repository(_spec("gpu", extra={
        "tensorrt": platform.TENSORRT, "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9"},
        "checkpoint_sha256": "0123"}), tmp_path / "repo", num_priors=1680)
    summary = repository_summary(repo)
    assert (summary["target"] == "gpu" and summary["tensorrt"] == platform.TENSORRT
            and summary["gpu"]["name"] == "NVIDIA L4")
    assert summary["checkpoint_sha256"] == "0123" and platform_warnings(summary) == []
    older = dict(summary, tensorrt="10.7.0.23")
    (warning,) = platform_warnings(older)
    assert "built with TensorRT 10.7.0.23" in warning and platform.CONTAINER in warning
    assert platform_warnings(dict(older, target="cpu")) == []


def test_validator_command_reports_and_warns(tmp_path):
    import subprocess
    import sys
    repo = write_repository(_spec("gpu", extra={
        "tensorrt": "10.7.0.23", "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9"}}),
        tmp_path / "repo", num_priors=1680)
    (repo / "damo_yolo_detector" / "1" / "model.plan").write_bytes(b"engine")
    (repo / "damo_yolo_preprocess" / "1" / "model.dali").write_bytes(b"pipeline")
    run = subprocess.run([sys.executable, "-m", "damo_yolo.serving.repository", str(repo)], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    assert "tensorrt 10.7.0.23" in run.stdout and "GPU NVIDIA L4 (compute 8.9)" in run.stdout
    assert "warning: the plan was built with TensorRT 10.7.0.23" in run.stderr
    (repo / "damo_yolo_detector" / "1" / "model.plan").unlink()
    run = subprocess.run([sys.executable, "-m", "damo_yolo.serving.repository", str(repo)], capture_output=True,
                         text=True)
    assert run.returncode == 1 and "missing 1/model.plan" in run.stderr
