"""The served model's configuration is one typed definition (damo_yolo.contract.ServingConfig): written once into
each model's parameters and read back the same by the python-backend models, the validator, the benchmark and
the client; its range rules are the ones every reader applies."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

from damo_yolo import contract as C
from damo_yolo.contract import ServingConfig

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "triton_models"
SERVING = ServingConfig(input_size=(256, 320), class_names=("disc", "square"))


def test_parameters_and_json_read_back_the_same():
    other = replace(SERVING, score_threshold=0.25, iou_threshold=0.4, max_detections=7, resize="letterbox",
                    pad_value=114, precision="int8", decoder="dali", dali_decode="cuda", threads=3,
                    allow_spinning=True, max_pixels=0, model_file="detector.onnx")
    for config in (SERVING, other, replace(other, plan_score_threshold=0.05)):
        params = config.to_parameters()
        # the DALI decode path where DALI decodes (elsewhere it is "auto", left out)
        assert set(params) == {f.name for f in fields(ServingConfig)} - (
            set() if config.decoder == "dali" else {"dali_decode"})
        assert all(isinstance(v, str) for v in params.values())
        assert ServingConfig.from_parameters({**params, "export": "{}", "damo_yolo_version": "0.1.0"}) == config
        assert ServingConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert SERVING.to_parameters()["resize"] == "stretch"  # strings stay readable in config.pbtxt


@pytest.mark.parametrize("change,match", [
    (dict(score_threshold=1.0), r"score_threshold must be in \[0, 1\), got 1.0"),
    (dict(score_threshold=-0.1), "score_threshold"), (dict(score_threshold=math.nan), "score_threshold"),
    (dict(iou_threshold=0.0), r"iou_threshold must be in \(0, 1\]"), (dict(max_detections=0), "max_detections"),
    (dict(max_detections=5000), "max_detections"), (dict(resize="crop"), "unknown resize"),
    (dict(decoder="pillow"), "unknown decoder"), (dict(precision="int4"), "unknown precision"),
    (dict(decoder="dali", dali_decode="hardware"), "unknown dali_decode 'hardware'; choose auto or cuda or cpu"),
    (dict(dali_decode="cpu"), "dali_decode 'cpu' needs DALI decoding, but the decoder is opencv"),
    (dict(input_size=(250, 320)), "multiples of 32"), (dict(class_names=()), "class_names"),
    (dict(threads=-1), "threads"), (dict(model_file="../x.onnx"), "file name"),
    (dict(plan_score_threshold=0.6), "below 0.6, the threshold of the NMS inside the TensorRT plan")])
def test_bad_values_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        replace(SERVING, **change)


def test_request_thresholds_follow_the_same_rules():
    SERVING.check_thresholds(np.float32([0.0, 0.99]), np.float32([1.0, 0.01]))
    with pytest.raises(ValueError, match=r"SCORE_THRESHOLD must be in \[0, 1\), got nan"):
        SERVING.check_thresholds(np.float32([0.5, np.nan]), np.float32([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"IOU_THRESHOLD must be in \(0, 1\], got 0.0"):
        SERVING.check_thresholds(np.float32([0.5]), np.float32([0.0]))
    plan = replace(SERVING, plan_score_threshold=0.05)
    plan.check_thresholds(np.float32([0.05, 0.9]), np.float32([0.65, 0.65]))
    with pytest.raises(ValueError, match="SCORE_THRESHOLD 0.01 is below 0.05"):
        plan.check_thresholds(np.float32([0.5, 0.01]), np.float32([0.65, 0.65]))
    with pytest.raises(ValueError, match="IOU_THRESHOLD 0.5 cannot be honoured"):
        plan.check_thresholds(np.float32([0.5]), np.float32([0.5]))
    assert plan.with_defaults(0.3) == replace(plan, score_threshold=0.3)
    with pytest.raises(ValueError, match="below 0.05"):
        plan.with_defaults(0.01)


def test_the_client_and_the_cli_apply_the_contracts_ranges():
    from click.testing import CliRunner

    from damo_client import DamoClient
    from damo_client.cli import cli
    with pytest.raises(ValueError, match=r"score_threshold must be in \[0, 1\)"):
        DamoClient().detect_batch([b"x"], score_threshold=1.0)
    with pytest.raises(ValueError, match=r"iou_threshold must be in \(0, 1\]"):
        DamoClient().detect_batch([b"x"], iou_threshold=0.0)
    for option, value in (("--score-thr", "1"), ("--iou-thr", "0")):
        result = CliRunner().invoke(cli, ["detect", "x.jpg", option, value])
        assert result.exit_code == 2 and "is not in the range" in result.output, result.output


def _triton_args(config) -> dict:
    """The ``args`` Triton hands a python-backend model's initialize (its config as JSON)."""
    from google.protobuf.json_format import MessageToDict
    return {"model_config": json.dumps(MessageToDict(config, preserving_proto_field_name=True))}


def _benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "perf" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_copy_with_other_defaults_reads_back_the_same_everywhere(tmp_path):
    """The entrypoint's SCORE_THRESHOLD / IOU_THRESHOLD path (with_served_defaults) on the committed repository:
    the served model, the validator, the benchmark's in-process pipeline and the repository's readers all see
    the new defaults (the client's view through a real server: tests/deployment/test_entrypoint_metrics.py)."""
    from damo_yolo.serving.repository import (
        parse_config,
        repository_serving,
        serving_of,
        validate_repository,
        with_served_defaults,
    )
    from damo_yolo.serving.triton.common import serving_config
    original = repository_serving(COMMITTED)
    copy = with_served_defaults(COMMITTED, tmp_path / "copy", score_threshold=0.3, iou_threshold=0.5)
    want = replace(original, score_threshold=0.3, iou_threshold=0.5)
    assert repository_serving(copy) == want and repository_serving(COMMITTED) == original  # the source is kept
    (model,) = validate_repository(copy)
    assert serving_of(model) == want
    config = parse_config((copy / "damo_yolo" / "config.pbtxt").read_text())
    assert serving_config(_triton_args(config)) == want  # what the python-backend model initialises with
    pipe, serving = _benchmark()._pipeline(copy)
    try:
        assert serving == want and pipe.serving == want
        score, iou = pipe.thresholds(2)
        assert np.allclose(score, 0.3) and np.allclose(iou, 0.5)
    finally:
        pipe.close()
    run = subprocess.run([sys.executable, "-m", "damo_yolo.serving.repository", str(copy)], capture_output=True,
                         text=True)
    assert run.returncode == 0 and "serves score > 0.3, NMS IoU 0.5" in run.stdout, run.stdout + run.stderr


def test_the_gpu_ensemble_and_its_map_back_read_back_the_same(tmp_path):
    from damo_yolo.serving.repository import (
        RepositorySpec,
        parse_config,
        repository_serving,
        serving_of,
        with_served_defaults,
        write_repository,
    )
    serving = replace(SERVING, decoder="dali", dali_decode="cuda", score_threshold=0.5, plan_score_threshold=0.03)
    repo = write_repository(RepositorySpec(serving, target="gpu"), tmp_path / "repo", num_priors=1680)
    (repo / "damo_yolo_preprocess" / "1" / "model.dali").write_bytes(b"pipeline")
    (repo / "damo_yolo_detector" / "1" / "model.plan").write_bytes(b"engine")
    copy = with_served_defaults(repo, tmp_path / "copy", score_threshold=0.25)
    for model in ("damo_yolo", "damo_yolo_postprocess"):  # the client-facing ensemble and the map-back step
        assert serving_of(parse_config((copy / model / "config.pbtxt").read_text())) == replace(
            serving, score_threshold=0.25)
    assert repository_serving(copy).score_threshold == 0.25
    with pytest.raises(ValueError, match="below 0.03"):
        with_served_defaults(repo, tmp_path / "low", score_threshold=0.01)
    with pytest.raises(ValueError, match="cannot be honoured"):
        with_served_defaults(repo, tmp_path / "iou", iou_threshold=0.5)
    assert not (tmp_path / "low").exists() and not (tmp_path / "iou").exists()  # nothing half-written


def test_the_dali_decode_path_is_recorded_where_dali_decodes():
    """Where DALI decodes JPEGs (damo-export --dali-decode) is part of the served configuration and of its summary;
    repositories written before it (the committed one, OpenCV decoding) read back as they are."""
    from damo_yolo.serving.repository import parse_config, repository_serving
    committed = repository_serving(COMMITTED)
    assert committed.dali_decode == "auto" and committed.decoding == "opencv"
    assert "dali_decode" not in parse_config((COMMITTED / "damo_yolo" / "config.pbtxt").read_text()).parameters
    assert "dali_decode" not in committed.to_parameters()  # what an export writes for it today
    for path in C.DALI_DECODE_PATHS:
        gpu = replace(SERVING, decoder="dali", dali_decode=path, plan_score_threshold=0.03)
        assert gpu.to_parameters()["dali_decode"] == path and ServingConfig.from_parameters(gpu.to_parameters()) == gpu
        assert gpu.decoding == f"dali (JPEG: {path})" and f", dali (JPEG: {path}) decoding, " in gpu.summary()
    assert replace(SERVING, decoder="dali").to_parameters()["dali_decode"] == "auto"


def test_a_repository_without_a_serving_configuration_is_refused(tmp_path):
    import shutil

    from damo_yolo.serving.repository import config_text, parse_config, validate_repository
    shutil.copytree(COMMITTED, tmp_path / "repo")
    path = tmp_path / "repo" / "damo_yolo" / "config.pbtxt"
    config = parse_config(path.read_text())
    del config.parameters["input_size"]
    config.parameters["score_threshold"].string_value = "1.5"
    path.write_text(config_text(config))
    with pytest.raises(ValueError, match="damo_yolo: the serving configuration lacks input_size"):
        validate_repository(tmp_path / "repo")


def test_defaults_and_ranges_are_defined_in_one_module():
    """The served defaults and threshold ranges are written in damo_yolo/contract.py alone."""
    offenders = []
    for path in sorted((ROOT / "damo_yolo").rglob("*.py")) + sorted((ROOT / "damo_client").rglob("*.py")):
        if path.name == "contract.py":
            continue
        text = path.read_text()
        for pattern in ("must be in [0, 1)", "must be in (0, 1]", "< 1.0:", "0 <= score", "= 0.65", "FloatRange(0, 1"):
            if pattern in text:
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert not offenders, offenders
    assert C.SCORE_RANGE.contains(0.0) and not C.SCORE_RANGE.contains(1.0)
    assert C.IOU_RANGE.contains(1.0) and not C.IOU_RANGE.contains(0.0)
