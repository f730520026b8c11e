"""The exported repository served by the real tritonserver: detections equal the PyTorch model's on real
photographs over HTTP and gRPC (batch 1, and a batch of 4 different-sized images); bad inputs get clear
per-request errors or correct answers, and the server keeps serving."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from damo_yolo.data.preprocess import decode_image, preprocess
from damo_yolo.deploy.tritonserver import free_ports
from damo_yolo.models import build_model, load_checkpoint
from damo_yolo.postprocess import postprocess

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(trained_synthetic, tmp_path_factory):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from damo_yolo.tools.export import export_repository
    repo = export_repository(trained_synthetic["checkpoint"], tmp_path_factory.mktemp("repo") / "triton_models")
    http_port, grpc_port, metrics_port = free_ports(3)
    log = open(repo.parent / "server.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "tritonserver"), "--model-repository", str(repo),
                             f"--http-port={http_port}", f"--grpc-port={grpc_port}", f"--metrics-port={metrics_port}"],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    http = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}", network_timeout=120.0)
    deadline = time.time() + 180
    while True:
        try:
            if http.is_server_ready() and http.is_model_ready("damo_yolo"):
                break
        except Exception:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("tritonserver did not become ready:\n" + (repo.parent / "server.log").read_text()[-4000:])
        time.sleep(0.5)
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    yield {"http": http, "grpc": grpc, "http_mod": httpclient, "grpc_mod": grpcclient, "repo": repo, "proc": proc}
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def local_model(trained_synthetic):
    model = build_model("Ns", num_classes=8)
    meta = load_checkpoint(model, trained_synthetic["checkpoint"])
    return model.eval(), meta


def _local_detections(model, meta, data: bytes, score_threshold=None):
    chw, info = preprocess(decode_image(data), tuple(meta["input_size"]), meta["resize"], meta["pad_value"])
    with torch.inference_mode():
        scores, boxes = model(torch.from_numpy(chw)[None])
    thr = meta["score_threshold"] if score_threshold is None else score_threshold
    det_boxes, det_scores, det_classes = postprocess(scores[0].numpy(), boxes[0].numpy(), thr, meta["iou_threshold"],
                                                     meta["max_detections"])
    return info.to_original(det_boxes), det_scores, det_classes


def _infer(client, mod, images: list[bytes], score_threshold=None):
    inputs = [mod.InferInput("IMAGE", [len(images), 1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([[d] for d in images], dtype=object))
    if score_threshold is not None:
        thr = mod.InferInput("SCORE_THRESHOLD", [len(images), 1], "FP32")
        thr.set_data_from_numpy(np.full((len(images), 1), score_threshold, np.float32))
        inputs.append(thr)
    result = client.infer("damo_yolo", inputs)
    num = result.as_numpy("num_detections")[:, 0]
    return [(result.as_numpy("boxes")[i, :n], result.as_numpy("scores")[i, :n], result.as_numpy("classes")[i, :n])
            for i, n in enumerate(num)]


def _assert_same(served, local, k: int, margin: float = 2e-3) -> int:
    """Same detections, ignoring only those within ``margin`` of the cut-offs (threshold, top-k), where a
    1e-5 difference of score may legitimately decide inclusion. Returns how many were compared."""
    (sb, ss, sc), (lb, ls, lc) = served, local
    floor = max(ss.min() if len(ss) == k else 0.0, ls.min() if len(ls) == k else 0.0) + margin
    for (ab, as_, ac), (bb, bs, bc) in (((sb, ss, sc), (lb, ls, lc)), ((lb, ls, lc), (sb, ss, sc))):
        for box, score, cls in zip(ab, as_, ac):
            if score < floor + (0 if len(ss) < k else margin):
                continue
            close = (bc == cls) & (np.abs(bb - box).max(1) <= 1.0) & (np.abs(bs - score) <= 1e-3)
            assert close.any(), f"no match for class {cls} score {score:.4f} box {box}"
    return int((ss >= floor + margin).sum())


def _synthetic_val(trained_synthetic, count: int) -> list[Path]:
    return sorted((trained_synthetic["data"] / "val").glob("*.jpg"))[:count]


def test_served_detections_equal_pytorch(server, local_model, sample_images, trained_synthetic):
    model, meta = local_model
    k, compared = meta["max_detections"], 0
    # the real photographs, and images of the kind the model was trained on (confident detections)
    for path in sample_images + _synthetic_val(trained_synthetic, 3):
        data = path.read_bytes()
        want = _local_detections(model, meta, data)
        for proto in ("http", "grpc"):
            (got,) = _infer(server[proto], server[f"{proto}_mod"], [data])
            compared += _assert_same(got, want, k)
    assert compared > 50, f"only {compared} detections compared"


def test_batch_of_four_different_sizes(server, local_model, sample_images):
    model, meta = local_model
    datas = [p.read_bytes() for p in sample_images[:4]]
    assert len({decode_image(d).shape for d in datas}) > 1
    for got, data in zip(_infer(server["http"], server["http_mod"], datas), datas):
        _assert_same(got, _local_detections(model, meta, data), meta["max_detections"])
        h, w = decode_image(data).shape[:2]
        assert (got[0][:, [0, 2]] <= w).all() and (got[0][:, [1, 3]] <= h).all() and (got[0] >= 0).all()


def test_per_request_score_threshold(server, local_model, trained_synthetic):
    model, meta = local_model
    data = _synthetic_val(trained_synthetic, 1)[0].read_bytes()
    (everything,) = _infer(server["grpc"], server["grpc_mod"], [data])
    (got,) = _infer(server["grpc"], server["grpc_mod"], [data], score_threshold=0.4)
    assert (got[1] > 0.4).all() and 0 < len(got[1]) < len(everything[1])
    assert _assert_same(got, _local_detections(model, meta, data, score_threshold=0.4), meta["max_detections"]) > 0


def _encode(image, ext=".jpg"):
    return cv2.imencode(ext, image)[1].tobytes()


def _bad_inputs(photo: bytes):
    from PIL import Image
    rgb = cv2.cvtColor(decode_image(photo), cv2.COLOR_BGR2RGB)
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, format="JPEG")
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(rgb).save(rotated, format="JPEG", exif=exif.tobytes())
    alpha = np.dstack([decode_image(photo), np.full(decode_image(photo).shape[:2], 128, np.uint8)])
    return {
        "not an image": (b"this is plain text, not a picture", "error"),
        "truncated JPEG": (photo[: len(photo) // 2], "error"),
        "zero bytes": (b"", "error"),
        "corrupt JPEG body": (photo[:200] + bytes(range(256)) * 20 + b"\xff\xd9", "either"),
        "1x1": (_encode(np.full((1, 1, 3), 200, np.uint8)), "answer"),
        "12000x12000": (_encode(np.full((12000, 12000, 3), 90, np.uint8)), "answer"),
        "grayscale": (_encode(cv2.cvtColor(decode_image(photo), cv2.COLOR_BGR2GRAY)), "answer"),
        "PNG with alpha": (_encode(alpha, ".png"), "answer"),
        "16-bit PNG": (_encode(decode_image(photo).astype(np.uint16) * 257, ".png"), "answer"),
        "CMYK JPEG": (cmyk.getvalue(), "answer"),
        "EXIF-rotated": (rotated.getvalue(), "answer"),
    }


def test_bad_inputs_get_clear_errors_and_the_server_keeps_serving(server, local_model, sample_images):
    model, meta = local_model
    good = sample_images[0].read_bytes()
    client, mod = server["http"], server["http_mod"]
    for name, (data, expect) in _bad_inputs(good).items():
        try:
            (got,) = _infer(client, mod, [data])
            outcome = "answer"
        except Exception as exc:  # InferenceServerException
            outcome, message = "error", str(exc)
        if expect == "error":
            assert outcome == "error", f"{name}: served an answer"
            assert "image 0 of the request" in message and len(message) < 300, f"{name}: unclear error {message}"
        elif expect == "answer":
            assert outcome == "answer", f"{name}: {message}"
            h, w = decode_image(data).shape[:2]
            assert (got[0][:, [0, 2]] <= w + 1e-3).all() and (got[0][:, [1, 3]] <= h + 1e-3).all(), name
            if name == "EXIF-rotated":
                assert (h, w) == decode_image(good).shape[1::-1]  # turned upright: width and height swap
                _assert_same(got, _local_detections(model, meta, data), meta["max_detections"])
        (after,) = _infer(client, mod, [good])  # the next good request is served
        assert len(after[1]) > 0, f"after {name}: the server stopped answering"
    # an empty batch and a wrongly typed input are refused by the server itself
    for inputs in ([mod.InferInput("IMAGE", [0, 1], "BYTES")], [mod.InferInput("IMAGE", [1, 1], "FP32")]):
        if inputs[0].datatype() == "FP32":
            inputs[0].set_data_from_numpy(np.zeros((1, 1), np.float32))
        else:
            inputs[0].set_data_from_numpy(np.zeros((0, 1), dtype=object))
        with pytest.raises(Exception):
            client.infer("damo_yolo", inputs)
    (after,) = _infer(client, mod, [good])
    assert len(after[1]) > 0
