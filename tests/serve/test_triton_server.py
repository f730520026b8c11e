"""The exported repository served by the real tritonserver: detections equal the PyTorch model's on real
photographs over HTTP and gRPC (batch 1, and a batch of 4 different-sized images); bad inputs get clear
per-request errors or correct answers, and the server keeps serving."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bad_inputs import corpus
from serving import assert_same_detections, infer_raw, local_detections

from damo_yolo.data.preprocess import decode_image
from damo_yolo.models import build_model, load_checkpoint

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(served_synthetic):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    yield {"http": httpclient.InferenceServerClient(served_synthetic.http_url, network_timeout=120.0),
           "grpc": grpcclient.InferenceServerClient(served_synthetic.grpc_url), "http_mod": httpclient,
           "grpc_mod": grpcclient, "repo": served_synthetic.repo, "proc": served_synthetic.proc}


@pytest.fixture(scope="module")
def local_model(trained_synthetic):
    model = build_model("Ns", num_classes=8)
    meta = load_checkpoint(model, trained_synthetic["checkpoint"])
    return model.eval(), meta


def _synthetic_val(trained_synthetic, count: int) -> list[Path]:
    return sorted((trained_synthetic["data"] / "val").glob("*.jpg"))[:count]


def test_served_detections_equal_pytorch(server, local_model, sample_images, trained_synthetic):
    model, meta = local_model
    k, compared = meta.max_detections, 0
    # the real photographs, and images of the kind the model was trained on (confident detections)
    for path in sample_images + _synthetic_val(trained_synthetic, 3):
        data = path.read_bytes()
        want = local_detections(model, meta, data)
        for proto in ("http", "grpc"):
            (got,) = infer_raw(server[proto], server[f"{proto}_mod"], [data])
            compared += assert_same_detections(got, want, k)
    assert compared > 50, f"only {compared} detections compared"


def test_batch_of_four_different_sizes(server, local_model, sample_images):
    model, meta = local_model
    datas = [p.read_bytes() for p in sample_images[:4]]
    assert len({decode_image(d).shape for d in datas}) > 1
    for got, data in zip(infer_raw(server["http"], server["http_mod"], datas), datas):
        assert_same_detections(got, local_detections(model, meta, data), meta.max_detections)
        h, w = decode_image(data).shape[:2]
        assert (got[0][:, [0, 2]] <= w).all() and (got[0][:, [1, 3]] <= h).all() and (got[0] >= 0).all()


def test_per_request_score_threshold(server, local_model, trained_synthetic):
    model, meta = local_model
    data = _synthetic_val(trained_synthetic, 1)[0].read_bytes()
    (everything,) = infer_raw(server["grpc"], server["grpc_mod"], [data])
    (got,) = infer_raw(server["grpc"], server["grpc_mod"], [data], score_threshold=0.4)
    assert (got[1] > 0.4).all() and 0 < len(got[1]) < len(everything[1])
    assert assert_same_detections(got, local_detections(model, meta, data, score_threshold=0.4),
                                  meta.max_detections) > 0


@pytest.mark.parametrize("name,value", [("SCORE_THRESHOLD", float("nan")), ("SCORE_THRESHOLD", -0.1),
                                        ("SCORE_THRESHOLD", 1.5), ("IOU_THRESHOLD", 0.0), ("IOU_THRESHOLD", 1.2),
                                        ("IOU_THRESHOLD", float("nan"))])
def test_thresholds_that_make_no_sense_get_a_400_naming_the_input(server, sample_images, name, value):
    from tritonclient.utils import InferenceServerException
    client, mod = server["http"], server["http_mod"]
    image = mod.InferInput("IMAGE", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[sample_images[0].read_bytes()]], dtype=object))
    threshold = mod.InferInput(name, [1, 1], "FP32")
    threshold.set_data_from_numpy(np.full((1, 1), value, np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("damo_yolo", [image, threshold])
    assert name in err.value.message() and "must be in" in err.value.message()
    assert str(err.value.status()) == "400"
    assert client.infer("damo_yolo", [image]).as_numpy("num_detections").shape == (1, 1)  # and serves on


def test_bad_inputs_get_clear_errors_and_the_server_keeps_serving(server, local_model, sample_images):
    model, meta = local_model
    good = sample_images[0].read_bytes()
    client, mod = server["http"], server["http_mod"]
    for name, (data, expect) in corpus().items():
        try:
            (got,) = infer_raw(client, mod, [data])
            outcome = "answer"
        except Exception as exc:  # InferenceServerException
            outcome, message = "error", str(exc)
        if expect == "error":
            assert outcome == "error", f"{name}: served an answer"
        if outcome == "error":
            assert "image 0 of the request" in message and len(message) < 300, f"{name}: unclear error {message}"
        elif expect in ("answer", "either"):
            assert outcome == "answer", f"{name}: {message}"
            h, w = decode_image(data).shape[:2]
            assert (got[0][:, [0, 2]] <= w + 1e-3).all() and (got[0][:, [1, 3]] <= h + 1e-3).all(), name
            assert_same_detections(got, local_detections(model, meta, data), meta.max_detections)
            if name == "exif_rotated.jpg":
                assert h > w  # turned upright: the landscape photo stands
        (after,) = infer_raw(client, mod, [good])  # the next good request is served
        assert len(after[1]) > 0, f"after {name}: the server stopped answering"
    # one request mixing a good and a bad image fails as a whole, naming the bad one
    with pytest.raises(Exception, match="image 1 of the request: truncated JPEG"):
        infer_raw(client, mod, [good, corpus(huge=False)["truncated.jpg"][0]])
    # an empty batch and a wrongly typed input are refused by the server itself
    for inputs in ([mod.InferInput("IMAGE", [0, 1], "BYTES")], [mod.InferInput("IMAGE", [1, 1], "FP32")]):
        if inputs[0].datatype() == "FP32":
            inputs[0].set_data_from_numpy(np.zeros((1, 1), np.float32))
        else:
            inputs[0].set_data_from_numpy(np.zeros((0, 1), dtype=object))
        with pytest.raises(Exception):
            client.infer("damo_yolo", inputs)
    (after,) = infer_raw(client, mod, [good])
    assert len(after[1]) > 0


def test_a_repository_of_another_damo_yolo_release_fails_loading_clearly(tmp_path):
    import shutil

    from damo_yolo.serving.repository import config_text, parse_config
    from damo_yolo.serving.tritonserver import LocalServer
    repo = shutil.copytree(ROOT / "triton_models", tmp_path / "triton_models")
    path = repo / "damo_yolo" / "config.pbtxt"
    config = parse_config(path.read_text())
    config.parameters["damo_yolo_version"].string_value = "9.9.0"
    path.write_text(config_text(config))
    with pytest.raises(RuntimeError, match="did not get damo_yolo ready"):
        LocalServer(repo, tmp_path / "server.log", ready_timeout=60).start()
    log = (tmp_path / "server.log").read_text()
    assert "exported by damo_yolo 9.9.0, but damo_yolo" in log and "re-export" in log
