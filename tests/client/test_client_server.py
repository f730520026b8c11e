"""The SDK and the CLI against the real tritonserver serving the trained synthetic model: HTTP and gRPC, sync
and async, every input form, thresholds, batching beyond the model's batch limit, server errors, and the
perf command through the real perf_analyzer."""
from __future__ import annotations

import asyncio
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from serving import assert_same_detections, local_detections

from damo_client import AsyncDamoClient, DamoClient, InferenceError
from damo_client.cli import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_model(trained_synthetic):
    from damo_yolo.models import build_model, load_checkpoint
    model = build_model("Ns", num_classes=8)
    meta = load_checkpoint(model, trained_synthetic["checkpoint"])
    return model.eval(), meta


def _as_arrays(detections):
    return (np.array([d.box for d in detections], np.float32).reshape(-1, 4),
            np.array([d.score for d in detections], np.float32), np.array([d.class_id for d in detections]))


def _url(server, protocol):
    return server.http_url if protocol == "http" else server.grpc_url


def _images(trained_synthetic, sample_images, count=3):
    return sample_images[:2] + sorted((trained_synthetic["data"] / "val").glob("*.jpg"))[:count]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sdk_detections_equal_pytorch(served_synthetic, local_model, trained_synthetic, sample_images, protocol):
    model, meta = local_model
    compared = 0
    with DamoClient(_url(served_synthetic, protocol), protocol) as client:
        for path in _images(trained_synthetic, sample_images):
            got = client.detect(path)
            want = local_detections(model, meta, path.read_bytes())
            compared += assert_same_detections(_as_arrays(got), want, meta.max_detections)
            assert all(d.class_name == meta.class_names[d.class_id] for d in got)
        assert client.class_names == list(meta.class_names) and client.max_batch_size == 8
    assert compared > 20


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_async_sdk_equals_sync(served_synthetic, trained_synthetic, sample_images, protocol):
    paths = _images(trained_synthetic, sample_images)
    with DamoClient(_url(served_synthetic, protocol), protocol) as client:
        want = client.detect_batch(paths)

    async def run():
        async with AsyncDamoClient(_url(served_synthetic, protocol), protocol) as client:
            assert await client.is_ready()
            one_by_one = await asyncio.gather(*(client.detect(p) for p in paths))  # concurrent requests
            return one_by_one, await client.detect_batch(paths)

    one_by_one, batched = asyncio.run(run())
    for a, b, c in zip(want, one_by_one, batched):
        assert_same_detections(_as_arrays(a), _as_arrays(b), 100)
        assert_same_detections(_as_arrays(a), _as_arrays(c), 100)


def test_every_input_form_and_batches_beyond_the_limit(served_synthetic, trained_synthetic, sample_images):
    path = sorted((trained_synthetic["data"] / "val").glob("*.jpg"))[0]
    with DamoClient(served_synthetic.http_url) as client:
        want = client.detect(path)
        with open(path, "rb") as f:
            forms = [path.read_bytes(), str(path), f]
            for form in forms:
                assert client.detect(form) == want
        # a BGR array is sent as it is (PIXELS): the same pixels as the decoded JPEG, the same answer
        assert client.takes_pixels and client.detect(cv2.imread(str(path))) == want
        many = client.detect_batch([path] * 11)  # two requests: 8 + 3
        assert len(many) == 11 and all(d == want for d in many)


def test_decoded_pixels_are_taken_as_they_are(served_synthetic, trained_synthetic):
    """PIXELS (the CPU target's decoded-image input): the answer equals the encoded lossless image's; frames of
    different sizes in flight together (the batcher may put them in one batch) each get their own answer; a
    request with both inputs, neither, or an empty image gets a 400 that says so, and the server keeps serving."""
    import asyncio

    import tritonclient.grpc as grpcclient

    from damo_client.client import AsyncDamoClient
    from damo_client.images import encode_array
    images = [cv2.imread(str(p)) for p in sorted((trained_synthetic["data"] / "val").glob("*.jpg"))[:4]]
    images = [images[0], images[1][:200, :240], images[2][40:, 10:], images[3]]  # three sizes
    with DamoClient(served_synthetic.grpc_url, "grpc") as client:
        alone = [client.detect(encode_array(image)) for image in images]  # PNG: lossless
        assert [client.detect(image) for image in images] == alone and any(alone)
        assert client.detect_batch(images) == alone  # requests grouped by size, answers in order

    async def together():
        async with AsyncDamoClient(served_synthetic.grpc_url, "grpc") as aclient:
            return await asyncio.gather(*(aclient.detect(image) for image in images * 3))

    assert asyncio.run(together()) == alone * 3
    raw = grpcclient.InferenceServerClient(served_synthetic.grpc_url)
    pixels = grpcclient.InferInput("PIXELS", [1, *images[0].shape], "UINT8")
    pixels.set_data_from_numpy(images[0][None])
    encoded = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    encoded.set_data_from_numpy(np.array([[encode_array(images[0])]], dtype=object))
    empty = grpcclient.InferInput("PIXELS", [1, 0, 8, 3], "UINT8")
    empty.set_data_from_numpy(np.zeros((1, 0, 8, 3), np.uint8))
    score = grpcclient.InferInput("SCORE_THRESHOLD", [1, 1], "FP32")
    score.set_data_from_numpy(np.full((1, 1), 0.5, np.float32))
    for inputs, said in (([pixels, encoded], "give each request IMAGE"), ([score], "give each request IMAGE"),
                         ([empty], "the pixels are 8x0: no image")):
        with pytest.raises(Exception, match=said):
            raw.infer("damo_yolo", inputs)
    with DamoClient(served_synthetic.grpc_url, "grpc") as client:
        assert client.detect(images[0]) == alone[0]


def test_thresholds_and_server_errors(served_synthetic, trained_synthetic):
    path = sorted((trained_synthetic["data"] / "val").glob("*.jpg"))[0]
    with DamoClient(served_synthetic.grpc_url, "grpc") as client:
        everything = client.detect(path)
        strict = client.detect(path, score_threshold=0.4)
        assert strict and all(d.score > 0.4 for d in strict) and len(strict) < len(everything)
        assert len(client.detect(path, iou_threshold=0.3)) <= len(everything)
        with pytest.raises(InferenceError, match="image 0 of the request: not a JPEG or PNG"):
            client.detect(b"GIF89a not supported here")
        assert client.detect(path) == everything  # the server keeps serving


def test_health_and_models(served_synthetic, sample_images):
    with DamoClient(served_synthetic.http_url) as client:
        assert client.is_live() and client.is_ready()
        states = {m["name"]: m["state"] for m in client.models()}
    assert states == {"damo_yolo": "READY"}  # the CPU target: one model
    runner = CliRunner()
    for protocol in ("http", "grpc"):
        result = runner.invoke(cli, ["health", "-u", _url(served_synthetic, protocol), "-p", protocol])
        assert result.exit_code == 0 and "ready=True" in result.output
        assert "exported: damo_yolo 0.1.0, target cpu, variant Ns, precision fp32" in result.output
    result = runner.invoke(cli, ["models", "-u", served_synthetic.http_url])
    assert result.exit_code == 0 and "damo_yolo  1        READY" in result.output, result.output
    # the served defaults (this server was exported with the checkpoint's evaluation thresholds)
    assert "score > 0.03, NMS IoU 0.65, at most 500 boxes per image" in result.output
    assert "exported: damo_yolo 0.1.0, target cpu" in result.output and "warning" not in result.output
    for command in (["health"], ["detect", str(sample_images[0])]):
        result = runner.invoke(cli, [*command, "-u", served_synthetic.http_url, "-m", "no_such_model"])
        assert result.exit_code == 1 and f"model 'no_such_model' is not served at {served_synthetic.http_url}; " \
            "served: damo_yolo (--model NAME)" in result.output, result.output


def test_cli_detect_writes_json_and_annotated_images(served_synthetic, trained_synthetic, sample_images, tmp_path):
    val = sorted((trained_synthetic["data"] / "val").glob("*.jpg"))[:3]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(val[0].read_bytes()[:500])
    runner = CliRunner()
    args = ["detect", *map(str, val), str(sample_images[0]), "-u", served_synthetic.grpc_url, "-p", "grpc",
            "--score-thr", "0.3", "--json", str(tmp_path / "out.json"), "--save-dir", str(tmp_path / "annotated")]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"{val[0]}:" in result.output and "score" in result.output
    results = json.loads((tmp_path / "out.json").read_text())
    assert results and {"image_id", "category_id", "bbox", "score", "category_name"} <= set(results[0])
    assert {r["image_id"] for r in results} <= {0, 1, 2, 3} and all(r["score"] >= 0.3 for r in results)
    for path in val + [sample_images[0]]:
        drawn = cv2.imread(str(tmp_path / "annotated" / f"{path.stem}.jpg"))
        assert drawn is not None and drawn.shape == cv2.imread(str(path)).shape
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    result = runner.invoke(cli, ["detect", str(val[0]), str(bad), str(empty), "-u", served_synthetic.http_url])
    assert result.exit_code == 1 and "broken.jpg" in result.output and "truncated JPEG" in result.output
    assert f"{empty}: the image is empty (0 bytes)" in result.output and "2 of 3 image(s) failed" in result.output


def test_cli_perf_runs_perf_analyzer_with_real_images(served_synthetic, sample_images, tmp_path):
    result = CliRunner().invoke(cli, [
        "perf", "-u", served_synthetic.http_url, "--images", str(sample_images[0].parent), "--concurrency", "1:2:1",
        "--measurement-interval", "800", "--max-trials", "3", "--stability", "100",
        "--csv", str(tmp_path / "perf.csv"), "--plot", str(tmp_path / "perf.png")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2"] and all(float(r[1]) > 0 and float(r[2]) > 0 for r in rows)
    assert len((tmp_path / "perf.csv").read_text().splitlines()) == 3
    assert (tmp_path / "perf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_perf_reports_levels_it_cannot_stabilise(served_synthetic, sample_images, tmp_path):
    """perf_analyzer needs three windows to judge stability: with two it never can. Every requested level is
    still reported, marked unstable, and the command says so."""
    result = CliRunner().invoke(cli, [
        "perf", "-u", served_synthetic.http_url, "--images", str(sample_images[0]), "--concurrency", "1:3:2",
        "--measurement-interval", "300", "--max-trials", "2", "--csv", str(tmp_path / "perf.csv")])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "3"] and all(r[2] == "unstable:" and float(r[1]) > 0 for r in rows)
    assert "no stable measurement at concurrency 1, 3" in result.output and "warning" in result.output
    import csv
    recorded = list(csv.DictReader(open(tmp_path / "perf.csv")))
    assert [(r["concurrency"], r["stable"]) for r in recorded] == [("1", "False"), ("3", "False")]
    assert all(float(r["mean_ms"]) > 0 and r["p50_ms"] == "" for r in recorded)


def test_cli_perf_keeps_every_measured_level_when_one_fails(served_synthetic, sample_images, tmp_path):
    """Level 769 cannot finish within --timeout: perf_analyzer waits for its 769 requests in flight before it
    ends, and answering them takes several seconds on any CPU (about 12 s here, where level 1 overruns its
    windows by less than 0.1 s). It is reported failed, naming --timeout; level 1 before it stays in the
    table, CSV and plot, and level 1537 after it is still run. (gRPC, so the server drops the requests of
    the stopped perf_analyzer instead of computing them for nobody.)"""
    import csv
    import time
    start = time.monotonic()
    result = CliRunner().invoke(cli, [
        "perf", "-u", served_synthetic.grpc_url, "-p", "grpc", "--images", str(sample_images[0].parent),
        "--concurrency", "1:1537:768", "--measurement-interval", "300", "--max-trials", "3", "--stability", "1000",
        "--timeout", "1.5", "--csv", str(tmp_path / "perf.csv"), "--plot", str(tmp_path / "perf.png")])
    elapsed = time.monotonic() - start
    assert result.exit_code == 1, result.output
    recorded = list(csv.DictReader(open(tmp_path / "perf.csv")))
    assert [r["concurrency"] for r in recorded] == ["1", "769", "1537"], result.output
    measured, failed, after = recorded
    assert measured["error"] == "" and float(measured["throughput"]) > 0 and float(measured["p50_ms"]) > 0, \
        result.output
    for row in (failed, after):
        assert row["throughput"] == "" and row["stable"] == "False"
        assert row["error"].startswith("answers still outstanding 1.5 s after the measurement windows"), row
        assert row["error"].endswith("raise --timeout")
    lines = result.output.splitlines()
    assert f"        769  failed: {failed['error']}" in lines
    assert lines[-1] == "Error: perf_analyzer measured nothing at concurrency 769, 1537 of 1:1537:768 (reasons above)"
    assert (tmp_path / "perf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\nperf with a failing level: {elapsed:.1f} s")


def test_cli_perf_stops_at_once_when_every_request_would_fail(served_synthetic, sample_images, tmp_path):
    import time
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "notes.jpg").write_text("a text file, not a photograph\n")
    start = time.monotonic()
    result = CliRunner().invoke(cli, ["perf", "-u", served_synthetic.http_url, "--images", str(tmp_path / "images"),
                                      "--csv", str(tmp_path / "perf.csv")])
    elapsed = time.monotonic() - start
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1, result.output
    assert result.output.startswith("Error: every request would fail: inference: image 0 of the request: not a JPEG "
                                    "or PNG image (starts with b'a text f'")
    assert not (tmp_path / "perf.csv").exists() and elapsed < 10  # no perf_analyzer run, no load
    print(f"\none-request check: {elapsed:.2f} s")
    result = CliRunner().invoke(cli, ["perf", "-u", served_synthetic.http_url, "--images", str(sample_images[0]),
                                      "-b", "9"])
    assert result.exit_code == 2 and "--batch-size" in result.output and "max batch size 8" in result.output


def test_cli_detect_quiet_says_what_came_back(served_synthetic, trained_synthetic):
    val = sorted((trained_synthetic["data"] / "val").glob("*.jpg"))[:3]
    result = CliRunner().invoke(cli, ["detect", *map(str, val), "-u", served_synthetic.http_url, "-q"])
    assert result.exit_code == 0, result.output
    (line,) = result.output.splitlines()
    count = sum(len(d) for d in DamoClient(served_synthetic.http_url).detect_batch(val))
    assert line == (f"3 of 3 image(s) answered, {count} detection(s) (-q hides the tables; --json or --save-dir "
                    f"keep the detections)") and count > 0


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_port_of_the_other_protocol_is_named(served_synthetic, sample_images, protocol):
    from damo_client import WrongProtocol
    other = served_synthetic.grpc_url if protocol == "http" else served_synthetic.http_url
    speaks = "gRPC" if protocol == "http" else "HTTP"
    with pytest.raises(WrongProtocol, match=f"{other} speaks {speaks}, not"):
        DamoClient(other, protocol=protocol).detect(sample_images[0])

    async def run():
        async with AsyncDamoClient(other, protocol=protocol) as client:
            await client.detect(sample_images[0])
    with pytest.raises(WrongProtocol, match=f"--protocol {'grpc' if protocol == 'http' else 'http'}"):
        asyncio.run(run())
    result = CliRunner().invoke(cli, ["detect", str(sample_images[0]), "-u", other, "--protocol", protocol])
    assert result.exit_code == 1 and f"speaks {speaks}" in result.output and len(result.output.splitlines()) == 1
