"""Generated model repositories: every config.pbtxt parses against Triton's ModelConfig, for both targets,
and the ensemble wires the contract of design.md."""
from __future__ import annotations

import json

import pytest

from damo_yolo.deploy.repository import RepositorySpec, model_configs, parse_config, write_repository

SPEC = dict(input_size=(256, 320), class_names=["disc", "square", "star"], score_threshold=0.03,
            iou_threshold=0.65, max_detections=50)


def test_cpu_repository_files_and_configs(tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"graph")
    repo = write_repository(RepositorySpec(**SPEC), tmp_path / "repo", num_priors=1680, onnx_path=onnx)
    names = ["damo_yolo", "damo_yolo_detector", "damo_yolo_postprocess", "damo_yolo_preprocess"]
    assert sorted(p.name for p in repo.iterdir()) == names
    for name in names:
        config = parse_config((repo / name / "config.pbtxt").read_text())
        assert config.name == name and config.max_batch_size == 8 and (repo / name / "1").is_dir()
    assert (repo / "damo_yolo_detector" / "1" / "model.onnx").read_bytes() == b"graph"
    for name in names[1:]:
        assert (repo / name / "1" / "model.py").is_file()
    assert (repo / "damo_yolo" / "labels.txt").read_text().split() == SPEC["class_names"]
    record = json.loads((repo / "damo_yolo" / "export.json").read_text())
    assert record["target"] == "cpu" and record["input_size"] == [256, 320] and record["num_priors"] == 1680


def test_ensemble_contract():
    configs = model_configs(RepositorySpec(**SPEC), num_priors=1680)
    ens = configs["damo_yolo"]
    assert ens.platform == "ensemble"
    inputs = {i.name: (i.data_type, list(i.dims), i.optional) for i in ens.input}
    from tritonclient.grpc import model_config_pb2 as pb
    assert inputs == {"IMAGE": (pb.TYPE_STRING, [1], False), "SCORE_THRESHOLD": (pb.TYPE_FP32, [1], True),
                      "IOU_THRESHOLD": (pb.TYPE_FP32, [1], True)}
    outputs = {o.name: (o.data_type, list(o.dims)) for o in ens.output}
    assert outputs == {"num_detections": (pb.TYPE_INT32, [1]), "boxes": (pb.TYPE_FP32, [50, 4]),
                       "scores": (pb.TYPE_FP32, [50]), "classes": (pb.TYPE_INT32, [50])}
    assert [o.label_filename for o in ens.output if o.name == "classes"] == ["labels.txt"]
    steps = [s.model_name for s in ens.ensemble_scheduling.step]
    assert steps == ["damo_yolo_preprocess", "damo_yolo_detector", "damo_yolo_postprocess"]
    # every tensor a step reads is the ensemble's input or an earlier step's output
    available = {"IMAGE", "SCORE_THRESHOLD", "IOU_THRESHOLD"}
    for step in ens.ensemble_scheduling.step:
        assert set(step.input_map.values()) <= available, step.model_name
        available |= set(step.output_map.values())
    for name in ("damo_yolo_preprocess", "damo_yolo_detector", "damo_yolo_postprocess"):
        assert list(configs[name].dynamic_batching.preferred_batch_size) == [4, 8]
        assert configs[name].instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU


def test_gpu_repository_uses_a_tensorrt_plan(tmp_path):
    spec = RepositorySpec(**SPEC, target="gpu")
    repo = write_repository(spec, tmp_path / "repo", num_priors=1680)
    det = parse_config((repo / "damo_yolo_detector" / "config.pbtxt").read_text())
    from tritonclient.grpc import model_config_pb2 as pb
    assert det.platform == "tensorrt_plan" and det.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert [i.name for i in det.input] == ["images"] and [o.name for o in det.output] == ["scores", "boxes"]
    ens = parse_config((repo / "damo_yolo" / "config.pbtxt").read_text())
    assert dict(ens.ensemble_scheduling.step[1].input_map) == {"images": "_input"}


def test_parse_rejects_unknown_fields():
    with pytest.raises(Exception):
        parse_config('name: "x" backend: "python" max_batch_sise: 8')


@pytest.mark.parametrize("kwargs,match", [(dict(target="tpu"), "unknown target"),
                                          (dict(preferred_batch_sizes=(16,)), "preferred batch sizes"),
                                          (dict(class_names=[]), "class_names")])
def test_bad_specs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RepositorySpec(**{**SPEC, **kwargs})
