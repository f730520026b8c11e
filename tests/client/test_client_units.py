"""The client's local pieces: image inputs, results, perf_analyzer input/CSV forms, retry classification, and
the CLI's behaviour when there is nothing to talk to."""
from __future__ import annotations

import base64
import io
import json
import struct
import time

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from damo_client import DamoClient, Detection, ImageError, ServerUnavailable
from damo_client.cli import cli
from damo_client.client import MAX_DELAY, _connection_error, _going_away
from damo_client.images import expand_paths, to_bytes
from damo_client.perf import (
    RowWriter,
    concurrency_levels,
    failed_row,
    failure_reason,
    format_rows,
    parse_csv,
    unstable_row,
    write_input_data,
)
from damo_client.results import format_table
from damo_yolo.serving.tritonserver import free_ports


def test_files_and_bytes_are_sent_as_they_are(sample_images, tmp_path):
    data = sample_images[0].read_bytes()
    assert to_bytes(sample_images[0]) == data and to_bytes(str(sample_images[0])) == data
    assert to_bytes(bytearray(data)) == data and to_bytes(io.BytesIO(data)) == data
    with open(sample_images[0], "rb") as f:
        assert to_bytes(f) == data


def test_arrays_are_encoded_losslessly(sample_images):
    bgr = cv2.imread(str(sample_images[0]))
    png = to_bytes(bgr)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), bgr)


@pytest.mark.parametrize("bad,match", [("/no/such/file.jpg", "no such file"), (b"", "empty"),
                                       (np.zeros((4, 4, 3), np.float32), "uint8"), (3.5, "cannot send a float")])
def test_bad_local_inputs(bad, match):
    with pytest.raises(ImageError, match=match):
        to_bytes(bad)


def test_a_bad_image_in_a_batch_is_named(sample_images, tmp_path):
    """Before anything is sent: a file by its path, another input by its place in the batch."""
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=rf"^{empty}: the image is empty \(0 bytes\)$"):
        DamoClient._encode([sample_images[0], empty, sample_images[1]], None, None)
    with pytest.raises(ImageError, match=r"^image 1 of 3: the image is empty \(0 bytes\)$"):
        DamoClient._encode([sample_images[0].read_bytes(), b"", sample_images[1]], None, None)


def test_text_mode_file_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with open(tmp_path / "a.txt") as f, pytest.raises(ImageError, match="binary mode"):
        to_bytes(f)


def test_expand_paths(tmp_path):
    for name in ("b.jpg", "a.PNG", "c.txt", "d.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in expand_paths([tmp_path])] == ["a.PNG", "b.jpg", "d.jpeg"]
    assert expand_paths([tmp_path / "c.txt"]) == [tmp_path / "c.txt"]


def test_detection_forms():
    det = Detection(box=(10.0, 20.0, 40.0, 60.5), score=0.87654321, class_id=3, class_name="star")
    assert det.to_coco(7) == {"image_id": 7, "category_id": 3, "bbox": [10.0, 20.0, 30.0, 40.5], "score": 0.87654}
    assert det.to_coco(7, category_id=90)["category_id"] == 90
    table = format_table([det, Detection((0, 0, 1, 1), 0.95, 0, "disc")])
    assert table.splitlines()[1].split()[:2] == ["disc", "0.950"] and "star" in table.splitlines()[2]
    assert "no detections" in format_table([])


def test_perf_input_data_holds_serialized_bytes_elements(tmp_path):
    datas = [b"\xff\xd8\xffjpeg", b"\x89PNG\r\n\x1a\npng-bytes"]
    entries = json.loads(write_input_data(datas, tmp_path / "in.json").read_text())["data"]
    for entry, data in zip(entries, datas):
        raw = base64.b64decode(entry["IMAGE"]["b64"])
        assert struct.unpack("<I", raw[:4])[0] == len(data) and raw[4:] == data


def test_parse_perf_analyzer_csv(tmp_path):
    # the header and a row as perf_analyzer 2.51 writes them (latencies in µs)
    (tmp_path / "p.csv").write_text(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
        "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
        "2,19.6752,149,13579,1,366,85469,824,1,100566,152291,159028,179844\n"
        "1,15.1994,241,7756,1,231,56025,632,1,57643,98101,101703,108464\n")
    rows = parse_csv(tmp_path / "p.csv")
    assert [r.concurrency for r in rows] == [1, 2]
    assert rows[0].p50_ms == pytest.approx(57.643) and rows[1].throughput == pytest.approx(19.6752)
    assert rows[0].server_compute_ms == pytest.approx(56.888)


def test_unstable_level_keeps_its_last_trial():
    # what perf_analyzer 2.51 prints (-v) for a level it cannot stabilise
    output = ("Request concurrency: 2\n"
              "  Pass [1] throughput: 3.30979 infer/sec. Avg latency: 365605 usec (std 1815 usec). \n"
              "  Pass [2] throughput: 23.1211 infer/sec. Avg latency: 113778 usec (std 58888 usec). \n"
              "Failed to obtain stable measurement within 2 measurement windows for concurrency 2.\n")
    row = unstable_row(2, output)
    assert not row.stable and row.throughput == pytest.approx(23.1211) and row.mean_ms == pytest.approx(113.778)
    assert "unstable" in format_rows([row]) and "no stable measurement at concurrency 2" in format_rows([row])
    assert concurrency_levels("1:8:3") == [1, 4, 7] and concurrency_levels("4") == [4]


# what perf_analyzer 2.51 prints (-v, stdout then stderr) when a window closes with no answer in it
NO_VALID = "No valid requests recorded within time interval. Please use a larger time window."
EMPTY_WINDOWS = (f"Request concurrency: 1\n  Pass [1] cb::Error: {NO_VALID}\n  Pass [2] cb::Error: {NO_VALID}\n"
                 f"{NO_VALID}\n")
# ... and when the server answers its requests with an error (here a text file sent as an image)
REFUSED = (f"Request concurrency: 1\n  Pass [1] cb::Error: {NO_VALID}\n"
           "Failed to maintain requested inference load. Worker thread(s) failed to generate concurrent requests.\n"
           "Thread [0] had error: image 0 of the request: not a JPEG or PNG image (starts with b'not an i', 12 "
           "bytes)\n")


def test_a_failed_level_says_why_and_what_to_change():
    assert failure_reason(EMPTY_WINDOWS, 3, 300) == (
        "no answer within a 300 ms measurement window (answers come further apart at this concurrency): raise "
        "--measurement-interval")
    # the server's own words win over the empty windows they caused
    assert failure_reason(REFUSED, 99, 300) == ("the server answered with an error: image 0 of the request: not a "
                                                "JPEG or PNG image (starts with b'not an i', 12 bytes)")
    assert failure_reason("Error: unknown option --foo\nUsage: perf_analyzer [options]\n", 99, 300) == \
        "perf_analyzer: Error: unknown option --foo (exit code 99)"
    rows = [unstable_row(1, "Pass [1] throughput: 9.5 infer/sec. Avg latency: 105000 usec"),
            failed_row(3, failure_reason(EMPTY_WINDOWS, 3, 300))]
    table = format_rows(rows).splitlines()
    assert table[2] == f"          3  failed: {rows[1].error}"
    assert table[-1] == ("perf_analyzer measured nothing at concurrency 3 (the reasons are in the table); the other "
                         "levels are kept")
    assert "no stable measurement at concurrency 1:" in table[-2]  # the failed level is not called unstable


def test_rows_are_on_disk_as_soon_as_they_are_written(tmp_path):
    import csv
    path = tmp_path / "sub" / "perf.csv"
    with RowWriter(path) as writer:
        writer.write(unstable_row(1, "Pass [1] throughput: 9.5 infer/sec. Avg latency: 105000 usec"))
        on_disk = list(csv.DictReader(open(path)))  # read while the file is still open for writing
        assert [(r["concurrency"], r["throughput"], r["mean_ms"], r["error"]) for r in on_disk] == \
            [("1", "9.5", "105.0", "")]
        writer.write(failed_row(3, "no answer within a 300 ms measurement window: raise --measurement-interval"))
        on_disk = list(csv.DictReader(open(path)))
        assert on_disk[1]["concurrency"] == "3" and on_disk[1]["throughput"] == "" and on_disk[1]["stable"] == "False"
        assert on_disk[1]["error"].endswith("raise --measurement-interval")
    with RowWriter(None) as nothing:  # no --csv: nothing written
        nothing.write(failed_row(1, "x"))


def test_only_connection_errors_are_retried():
    from tritonclient.utils import InferenceServerException
    assert _connection_error(ConnectionRefusedError(111, "refused"))
    assert _connection_error(InferenceServerException("x", status="StatusCode.UNAVAILABLE"))
    assert not _connection_error(TimeoutError("timed out"))
    from geventhttpclient.response import HTTPConnectionClosed
    assert _connection_error(HTTPConnectionClosed("connection closed."))  # the server went away mid-request
    assert not _connection_error(InferenceServerException("image 0: not a JPEG", status="400"))
    assert not _connection_error(ValueError("bad"))


def test_a_server_going_away_is_retried_and_a_bad_request_is_not():
    """Triton's own answers while it shuts down (the strings its 2.51 binary holds): "stopping" always; "unknown
    model" / "not ready" only once the model was seen served (before that it is a wrong name). A 400 never."""
    from tritonclient.utils import InferenceServerException
    stopping = InferenceServerException("Server is stopping to serve requests.", status="StatusCode.UNAVAILABLE")
    unloaded = InferenceServerException("Request for unknown model: 'damo_yolo' is not found",
                                        status="StatusCode.NOT_FOUND")
    not_ready = InferenceServerException("Model version not ready", status="400")
    bad_image = InferenceServerException("image 0: not a JPEG", status="400")
    assert _going_away(stopping, model_was_served=False) and _going_away(stopping, model_was_served=True)
    assert _going_away(unloaded, model_was_served=True) and not _going_away(unloaded, model_was_served=False)
    assert _going_away(not_ready, model_was_served=True)
    assert not _going_away(bad_image, model_was_served=True)
    client = DamoClient("127.0.0.1:1", "grpc", retries=2)
    assert client._failure(unloaded, "inference", last_attempt=False) is not None  # not served yet: a wrong name
    client.max_batch_size = 8  # the contract was read: the model was served here
    assert client._failure(unloaded, "inference", last_attempt=False) is None  # retried
    assert isinstance(client._failure(unloaded, "inference", last_attempt=True), ServerUnavailable)
    assert client._failure(bad_image, "inference", last_attempt=False) is not None  # answered at once


def test_backoff_is_jittered_and_bounded():
    client = DamoClient("127.0.0.1:1", "http", backoff=0.5)
    delays = [client._delay(1) for _ in range(200)]
    assert all(1.0 <= d <= 1.5 for d in delays) and len(set(delays)) > 100  # spread, never below the schedule
    assert client._delay(30) == MAX_DELAY


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unreachable_server_is_retried_with_backoff_then_reported(protocol):
    (port,) = free_ports(1)
    client = DamoClient(f"127.0.0.1:{port}", protocol, retries=2, backoff=0.1, timeout=5)
    start = time.perf_counter()
    with pytest.raises(ServerUnavailable, match=f"cannot reach the server at 127.0.0.1:{port}.*3 attempt"):
        client.detect(b"\xff\xd8\xff")
    assert time.perf_counter() - start >= 0.1 + 0.2  # two waits: backoff, then twice the backoff


def _resolver_knows_no_such_host() -> None:
    import socket
    try:
        socket.getaddrinfo("nosuchhost.invalid", 8000)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            pytest.skip("this host's resolver cannot be asked now (EAI_AGAIN): the name's absence is unknown")
        return
    pytest.skip("this host's resolver answers for nosuchhost.invalid")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_host_name_that_does_not_resolve_is_named_not_retried(protocol):
    _resolver_knows_no_such_host()
    client = DamoClient("nosuchhost.invalid:8000", protocol, retries=3, backoff=1.0, timeout=5)
    start = time.perf_counter()
    with pytest.raises(ServerUnavailable, match=r"^cannot resolve host nosuchhost\.invalid \(.+\): check the address"):
        client.detect(b"\xff\xd8\xff")
    assert time.perf_counter() - start < 1.0  # no backoff: the first wait alone would be 1 s
    result = CliRunner().invoke(cli, ["detect", __file__, "-u", "nosuchhost.invalid:8000", "-p", protocol])
    assert result.exit_code == 1 and result.output.startswith("Error: cannot resolve host nosuchhost.invalid")
    assert len(result.output.splitlines()) == 1 and "is tritonserver running" not in result.output


def test_client_settings_are_checked():
    with pytest.raises(ValueError, match="unknown protocol"):
        DamoClient(protocol="ftp")
    assert DamoClient("http://host:8000/").url == "host:8000"
    assert DamoClient(protocol="grpc").url == "127.0.0.1:8001"
    with pytest.raises(ValueError, match="score_threshold"):
        DamoClient().detect_batch([b"x"], score_threshold=1.5)


def test_cli_help_and_failures_without_a_server(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["-h"])
    assert result.exit_code == 0 and "damo-client detect" in result.output
    (port,) = free_ports(1)
    result = runner.invoke(cli, ["health", "--url", f"127.0.0.1:{port}"])
    assert result.exit_code == 1 and "cannot reach the server" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(cli, ["detect", str(tmp_path)])  # an empty folder
    assert result.exit_code == 1 and "no .jpg/.jpeg/.png images" in result.output
    result = runner.invoke(cli, ["perf", "--images", str(tmp_path), "--concurrency", "0:4"])
    assert result.exit_code == 2 and "START[:END[:STEP]]" in result.output


@pytest.mark.parametrize("width", [300, 60])
def test_labels_stay_whole_inside_the_image(width):
    from damo_client.draw import annotate
    image = np.full((200, width, 3), 255, np.uint8)
    out = annotate(image, [Detection((width - 20, 50, width, 120), 0.91, 3, "hexagon")])
    label_rows = np.flatnonzero((out[:50] != 255).any(axis=(1, 2)))
    assert label_rows.size, "no label drawn"
    text = (out[label_rows].max(axis=2) < 60)  # the black glyphs
    assert text.any()
    columns = np.flatnonzero(text.any(axis=0))
    assert columns.min() >= 1 and columns.max() <= width - 2, (columns.min(), columns.max())


def test_labels_near_the_edge_stay_clear_of_their_neighbours():
    """The demo's scene images_000004 (416 px): the triangle's label, pushed left to stay inside the image,
    used to run under the square's, which hid 'trian' of 'triangle 0.63'."""
    from damo_client.draw import annotate, place_labels
    detections = [Detection((285.0, 29.0, 316.0, 59.0), 0.67, 1, "square"),
                  Detection((384.0, 34.0, 414.0, 68.0), 0.63, 2, "triangle"),
                  Detection((194.0, 70.0, 320.0, 195.0), 0.76, 5, "cross"),
                  Detection((0.0, 0.0, 30.0, 25.0), 0.5, 3, "star")]
    image = np.full((416, 416, 3), 128, np.uint8)
    labels = place_labels(detections, 416, 416)
    assert all(label is not None for label in labels)
    rects = [label.rect for label in labels if label is not None]
    for i, (x1, y1, x2, y2) in enumerate(rects):
        assert 0 <= x1 < x2 <= 416 and 0 <= y1 < y2 <= 416
        for other in rects[i + 1:]:
            assert min(x2, other[2]) <= max(x1, other[0]) or min(y2, other[3]) <= max(y1, other[1]), (rects[i], other)
    out = annotate(image, detections)
    for label in labels:  # every label is in the picture whole, pixel for pixel, covered by nothing
        assert label is not None
        x1, y1, x2, y2 = label.rect
        np.testing.assert_array_equal(out[y1:y2, x1:x2], label.patch)


def test_label_ink_stays_inside_a_large_image():
    """At a large image's font size the glyphs reach above cv2.getTextSize's box: a label at the top edge
    keeps its ascenders."""
    from damo_client.draw import annotate
    image = np.full((600, 4000, 3), 255, np.uint8)
    out = annotate(image, [Detection((0, 0, 300, 200), 0.63, 2, "triangle|l")])
    text = out.max(axis=2) < 60
    rows, columns = np.flatnonzero(text.any(axis=1)), np.flatnonzero(text.any(axis=0))
    assert rows.size and rows.min() >= 1 and columns.min() >= 1


def test_grpc_resolver_targets_are_balanced_per_request_and_grpc_only():
    from damo_client.client import balanced, grpc_channel_args
    assert balanced("dns:///damo-yolo-headless.ns.svc:8001") and balanced("ipv4:10.0.0.1:8001,10.0.0.2:8001")
    assert not balanced("damo-yolo:8001") and grpc_channel_args("damo-yolo:8001") is None  # tritonclient's own
    options = dict(grpc_channel_args("dns:///damo-yolo-headless:8001") or [])
    assert options["grpc.lb_policy_name"] == "round_robin"
    assert options["grpc.max_receive_message_length"] == 2 ** 31 - 1  # tritonclient's defaults kept
    with pytest.raises(ValueError, match="gRPC resolver target"):
        DamoClient("dns:///damo-yolo-headless:8000", "http")
    result = CliRunner().invoke(cli, ["detect", __file__, "-u", "dns:///x:8000", "-p", "http"])
    assert result.exit_code == 2 and "Invalid value for '--url'" in result.output


def test_perf_checks_its_concurrency_before_printing(sample_images):
    result = CliRunner().invoke(cli, ["perf", "--images", str(sample_images[0]), "--concurrency", "8:1",
                                      "-u", "127.0.0.1:9"])
    assert result.exit_code == 2 and result.output.startswith("Usage:"), result.output
    assert "'8:1': END (1) is below START (8); e.g. 1:8" in result.output and "latency" not in result.output


def test_a_model_the_server_does_not_answer_for_is_explained():
    """From the repository index (Triton's answer form): a name not in it lists the served ones; a model in it
    that did not load gives its state and the server's reason; a closed index says how to see it."""
    client = DamoClient("127.0.0.1:9", model="damo_yolo")
    index = [{"name": "damo_yolo", "version": "1", "state": "UNAVAILABLE",
              "reason": "unable to load model 'damo_yolo': model.onnx not found"},
             {"name": "other", "version": "1", "state": "READY", "reason": ""}]
    assert str(client._unknown_model(index)) == (
        "model 'damo_yolo' is in the repository at 127.0.0.1:9 but not ready: UNAVAILABLE (unable to load model "
        "'damo_yolo': model.onnx not found)")
    assert str(DamoClient("127.0.0.1:9", model="nope")._unknown_model(index)) == (
        "model 'nope' is not served at 127.0.0.1:9; served: other (--model NAME)")
    assert "damo-client models --admin-key KEY" in str(client._unknown_model(None))
