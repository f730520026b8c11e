"""The GPU target's ensemble served by the real tritonserver on this CPU host: preprocess → the end2end
detector (NMS inside) → the map-back step. Only the TensorRT plan is replaced, by a stand-in with the plan's
exact tensors (tests/stand_ins/end2end_plan.py: the ONNX graph in onnxruntime + the reference NMS that
EfficientNMS_TRT performs). Its answers equal the CPU target's; thresholds it cannot honour get a clear 400."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from serving import assert_same_detections, infer_raw, running_server

pytestmark = pytest.mark.slow
STAND_IN = Path(__file__).resolve().parents[1] / "stand_ins" / "end2end_plan.py"


@pytest.fixture(scope="module")
def gpu_layout(trained_synthetic, tmp_path_factory):
    import tritonclient.http as httpclient

    from damo_yolo.deploy.onnx_export import export_onnx
    from damo_yolo.deploy.repository import (RepositorySpec, config_text, parse_config, validate_repository,
                                             write_repository)
    from damo_yolo.models import load_model
    model, meta = load_model(trained_synthetic["checkpoint"])
    h, w = meta.input_size
    root = tmp_path_factory.mktemp("gpu_layout")
    spec = RepositorySpec(input_size=(h, w), class_names=list(meta.class_names), score_threshold=meta.score_threshold,
                          iou_threshold=meta.iou_threshold, max_detections=meta.max_detections, target="gpu",
                          preprocess="opencv",  # as if its plan had been built with an older TensorRT:
                          extra={"tensorrt": "10.7.0.23", "precision": "fp16",
                                 "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9"}})
    num_priors = sum((h // s) * (w // s) for s in model.cfg.strides)
    repo = write_repository(spec, root / "triton_models", num_priors)  # no plan: the stand-in takes its place
    det_dir = repo / "damo_yolo_detector"
    config = parse_config((det_dir / "config.pbtxt").read_text())
    assert config.platform == "tensorrt_plan" and [o.name for o in config.output][0] == "num_dets"
    config.platform, config.backend = "", "python"
    config.instance_group[0].kind = config.instance_group[0].KIND_CPU
    for key, value in (("score_threshold", meta.score_threshold), ("iou_threshold", meta.iou_threshold),
                       ("max_detections", meta.max_detections)):
        config.parameters[key].string_value = str(value)
    (det_dir / "config.pbtxt").write_text(config_text(config))
    shutil.copy(STAND_IN, det_dir / "1" / "model.py")
    export_onnx(model, det_dir / "1" / "model.onnx", input_size=(h, w))
    validate_repository(repo)
    with running_server(repo, root / "server.log") as server:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=120.0)
        try:
            yield client, httpclient, meta, server
        finally:
            client.close()


def _images(trained_synthetic, sample_images):
    return [p.read_bytes() for p in sample_images[:3] + sorted((trained_synthetic["data"] / "val").glob("*.jpg"))[:5]]


def test_gpu_ensemble_answers_as_the_cpu_target(gpu_layout, served_synthetic, trained_synthetic, sample_images):
    import tritonclient.http as httpclient
    client, mod, meta, _ = gpu_layout
    cpu = httpclient.InferenceServerClient(served_synthetic.http_url, network_timeout=120.0)
    try:
        datas = _images(trained_synthetic, sample_images)
        compared = 0
        for threshold in (None, 0.4):  # the plan's threshold, and a per-request one above it
            got = infer_raw(client, mod, datas, score_threshold=threshold)
            want = infer_raw(cpu, httpclient, datas, score_threshold=threshold)
            for g, w in zip(got, want):
                compared += assert_same_detections(g, w, meta.max_detections)
        assert compared > 20, compared
    finally:
        cpu.close()


def test_thresholds_the_plan_cannot_honour_are_refused(gpu_layout, sample_images):
    from tritonclient.utils import InferenceServerException
    client, mod, meta, _ = gpu_layout
    data = sample_images[0].read_bytes()

    def request(name, value):
        image = mod.InferInput("IMAGE", [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[data]], dtype=object))
        thr = mod.InferInput(name, [1, 1], "FP32")
        thr.set_data_from_numpy(np.full((1, 1), value, np.float32))
        return client.infer("damo_yolo", [image, thr])

    with pytest.raises(InferenceServerException, match=r"IOU_THRESHOLD 0\.5 cannot be honoured.*TensorRT plan at "
                                                      r"IoU 0\.65"):
        request("IOU_THRESHOLD", 0.5)
    with pytest.raises(InferenceServerException, match=r"SCORE_THRESHOLD 0\.01 is below 0\.03"):
        request("SCORE_THRESHOLD", 0.01)
    with pytest.raises(InferenceServerException, match=r"SCORE_THRESHOLD must be in \[0, 1\), got nan"):
        request("SCORE_THRESHOLD", float("nan"))
    assert request("IOU_THRESHOLD", meta.iou_threshold).as_numpy("num_detections").shape == (1, 1)  # still serving


def test_health_reports_the_plan_and_warns_of_another_tensorrt(gpu_layout):
    from click.testing import CliRunner

    from damo_client.cli import cli
    from damo_yolo.deploy import platform
    *_, server = gpu_layout
    result = CliRunner().invoke(cli, ["health", "-u", server.http_url])
    assert result.exit_code == 0, result.output
    assert "target gpu, precision fp16, TensorRT 10.7.0.23 on NVIDIA L4 (compute 8.9)" in result.output
    assert f"warning: the plan was built with TensorRT 10.7.0.23, but the serving container runs TensorRT " \
           f"{platform.TENSORRT}" in result.output
