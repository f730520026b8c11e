"""The GPU target's ensemble served by the real tritonserver on this CPU host: model.dali (encoded UINT8 images)
→ the end2end detector (NMS inside) → the map-back step, called through the SDK. Two GPU-only pieces are
replaced by stand-ins with their exact tensors: Triton's DALI backend (tests/stand_ins/dali_backend.py runs the
repository's model.dali, serialized with CPU operators, through DALI's API) and the TensorRT plan
(tests/stand_ins/end2end_plan.py: the ONNX graph in onnxruntime + the reference NMS that EfficientNMS_TRT
performs). Its answers equal the CPU target's; thresholds it cannot honour get a clear 400."""
from __future__ import annotations

import numpy as np
import pytest
from serving import SERVED_DEFAULT, assert_same_detections, running_server, write_gpu_layout

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gpu_layout(trained_synthetic, tmp_path_factory):
    """The GPU layout served: ``damo_yolo`` as damo-export writes it, and ``wrong`` with a deliberately wrong plan."""
    import tritonclient.http as httpclient

    from damo_yolo.models import load_model
    from damo_yolo.serving.repository import validate_repository
    model, meta = load_model(trained_synthetic["checkpoint"])
    root = tmp_path_factory.mktemp("gpu_layout")
    repo = root / "triton_models"
    write_gpu_layout(repo, "damo_yolo", model, meta)
    write_gpu_layout(repo, "wrong", model, meta, defect="bgr")
    validate_repository(repo)
    with running_server(repo, root / "server.log") as server:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=120.0)
        try:
            yield client, httpclient, meta, server
        finally:
            client.close()


def _images(trained_synthetic, sample_images):
    return [p.read_bytes() for p in sample_images[:3] + sorted((trained_synthetic["data"] / "val").glob("*.jpg"))[:5]]


def test_gpu_ensemble_answers_as_the_model_does(gpu_layout, trained_synthetic, sample_images):
    """Served through the SDK (UINT8 images), equal to the PyTorch model with the reference NMS on the same DALI
    tensors — the NMS inside the plan and the map-back step change nothing."""
    from serving import local_detections

    from damo_client import DamoClient
    from damo_yolo.data.preprocess import ResizeInfo
    from damo_yolo.models import load_model
    from damo_yolo.serving.agreement import as_arrays
    from damo_yolo.serving.dali_preprocess import build_pipeline
    *_, meta, server = gpu_layout
    model, _ = load_model(trained_synthetic["checkpoint"])
    datas = _images(trained_synthetic, sample_images)
    pipe = build_pipeline(tuple(meta.input_size), meta.resize, meta.pad_value, len(datas), device="cpu")
    pipe.feed_input("IMAGE", [np.frombuffer(d, np.uint8) for d in datas])
    chw, scale, size = (np.array(t.as_tensor()) for t in pipe.run())
    compared = 0
    with DamoClient(server.http_url) as gpu:
        for threshold in (None, 0.1, 0.03):  # the served default, one below it, the plan's own
            got = as_arrays(gpu.detect_batch(datas, score_threshold=threshold))
            if threshold is None:
                assert all((g[1] > SERVED_DEFAULT).all() for g in got)
            for i, g in enumerate(got):
                info = ResizeInfo(int(size[i][0]), int(size[i][1]), float(scale[i][0]), float(scale[i][1]))
                want = local_detections(model, meta, datas[i], score_threshold=threshold or SERVED_DEFAULT,
                                        chw_info=(chw[i], info))
                compared += assert_same_detections(g, want, meta.max_detections)
        assert gpu.image_datatype == "UINT8"  # sent as the DALI backend takes them
    assert compared > 20, compared


def test_thresholds_the_plan_cannot_honour_are_refused(gpu_layout, sample_images):
    from damo_client import ContractError, DamoClient, ImageError, InferenceError
    client, mod, meta, server = gpu_layout
    with pytest.raises(ContractError, match="expected input IMAGE"):  # a step is not the detector clients call
        DamoClient(server.http_url, model="damo_yolo_detector").connect()
    photo = sample_images[0].read_bytes()
    with DamoClient(server.http_url) as sdk:
        with pytest.raises(InferenceError, match=r"IOU_THRESHOLD 0\.5 cannot be honoured.*TensorRT plan at IoU 0\.65"):
            sdk.detect(photo, iou_threshold=0.5)
        with pytest.raises(InferenceError, match=r"SCORE_THRESHOLD 0\.01 is below 0\.03"):
            sdk.detect(photo, score_threshold=0.01)
        with pytest.raises(ImageError, match=r"image 0: truncated JPEG.*not sent"):  # refused before the DALI backend
            sdk.detect(photo[: len(photo) // 2])
        assert sdk.detect(photo, iou_threshold=meta.iou_threshold) is not None  # still serving
    image = mod.InferInput("IMAGE", [1, len(photo)], "UINT8")
    image.set_data_from_numpy(np.frombuffer(photo, np.uint8)[None])
    thr = mod.InferInput("SCORE_THRESHOLD", [1, 1], "FP32")
    thr.set_data_from_numpy(np.full((1, 1), np.nan, np.float32))
    with pytest.raises(Exception, match=r"SCORE_THRESHOLD must be in \[0, 1\), got nan"):
        client.infer("damo_yolo", [image, thr])


def test_perf_analyzer_sends_uint8_images(gpu_layout, sample_images):
    from damo_client.perf import run_perf_analyzer
    *_, server = gpu_layout
    (row,) = run_perf_analyzer([p.read_bytes() for p in sample_images[:2]], server.http_url, concurrency="1",
                               measurement_interval_ms=500, max_trials=3, stability_percentage=100)
    assert row.throughput > 0


def test_health_reports_the_plan_and_warns_of_another_tensorrt(gpu_layout):
    from click.testing import CliRunner

    from damo_client.cli import cli
    from damo_yolo.serving import platform
    *_, server = gpu_layout
    result = CliRunner().invoke(cli, ["health", "-u", server.http_url])
    assert result.exit_code == 0, result.output
    assert "target gpu, precision fp16, TensorRT 10.7.0.23 on NVIDIA L4 (compute 8.9)" in result.output
    assert f"warning: the plan was built with TensorRT 10.7.0.23, but the serving container runs TensorRT " \
           f"{platform.TENSORRT}" in result.output


@pytest.fixture(scope="module")
def smoke_inputs(trained_synthetic, tmp_path_factory):
    """The smoke check's inputs: the checkpoint's FP32 ONNX (what onnxruntime runs as the reference) and images
    it detects objects in (the synthetic val set it was trained beside)."""
    from damo_yolo.models import load_model
    from damo_yolo.serving.onnx_export import export_onnx
    model, meta = load_model(trained_synthetic["checkpoint"])
    onnx_path = export_onnx(model, tmp_path_factory.mktemp("smoke") / "model.onnx", input_size=tuple(meta.input_size))
    datas = [p.read_bytes() for p in sorted((trained_synthetic["data"] / "val").glob("*.jpg"))]  # all 100
    return onnx_path, datas


def test_smoke_comparison_passes_on_the_served_plan(gpu_layout, smoke_inputs, capsys):
    """The GPU smoke check (damo_yolo/serving/agreement.py) run here with the stand-in plan: what the
    repository serves, at its own defaults, agrees with onnxruntime at those defaults."""
    from damo_yolo.serving import agreement
    *_, meta, server = gpu_layout
    onnx_path, datas = smoke_inputs
    result = agreement.check_served(server.http_url, "damo_yolo", onnx_path, datas, agreement.FP16)
    with capsys.disabled():
        print(f"\nsmoke comparison, stand-in plan: {result}")
    assert result.failures(agreement.FP16) == [] and result.compared >= agreement.FP16.min_compared
    assert result.found == result.compared and result.served_found == result.served_compared


def test_smoke_comparison_fails_on_a_wrong_plan(gpu_layout, smoke_inputs, capsys):
    from damo_yolo.serving import agreement
    *_, meta, server = gpu_layout
    onnx_path, datas = smoke_inputs
    result = agreement.check_served(server.http_url, "wrong", onnx_path, datas, agreement.FP16)
    with capsys.disabled():
        print(f"\nsmoke comparison, plan fed BGR: {result}")
    problems = result.failures(agreement.FP16)
    assert any("reference detections served" in p for p in problems), problems


def test_smoke_comparison_fails_when_nothing_is_compared(gpu_layout, smoke_inputs):
    """Images on which the checkpoint detects nothing (plain grey): an empty comparison is a failure."""
    import cv2

    from damo_yolo.serving import agreement
    *_, meta, server = gpu_layout
    onnx_path, _ = smoke_inputs
    grey = [cv2.imencode(".jpg", np.full((240 + 16 * i, 320, 3), 114, np.uint8))[1].tobytes() for i in range(6)]
    result = agreement.check_served(server.http_url, "damo_yolo", onnx_path, grey, agreement.FP16)
    assert result.compared == 0
    assert any(p.startswith("only 0 reference detections were compared") for p in result.failures(agreement.FP16))
