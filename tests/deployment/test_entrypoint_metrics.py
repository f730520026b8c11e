"""The images' entrypoint (deploy/docker/entrypoint.sh) run directly with the bundled tritonserver: it serves the
committed repository with the served defaults from the environment, and the server's /metrics carries every
series the dashboard, the alerts and the autoscaler read, moving as requests succeed and fail; SIGTERM stops it
cleanly."""
from __future__ import annotations

import re
import signal
import urllib.request

import pytest
from serving import start_entrypoint, wait_ready
from test_manifests import GPU_ONLY_SERIES, promql_expressions

pytestmark = pytest.mark.slow


def scrape(port: int) -> tuple[set, dict]:
    """The series names exactly as exported (what PromQL sees), and (sample name, sorted labels) → value as
    prometheus_client parses them (it names a counter's samples ``<name>_total``)."""
    from prometheus_client.parser import text_string_to_metric_families
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    names = {m[1] for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.MULTILINE)}
    return names, {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}


def total(scraped: tuple, name: str, **labels) -> float:
    """The sum of a series' samples matching ``labels``."""
    _, samples = scraped
    return sum(v for (n, ls), v in samples.items()
               if n in (name, f"{name}_total") and labels.items() <= dict(ls).items())


@pytest.fixture(scope="module")
def entrypoint_server(tmp_path_factory):
    from damo_yolo.serving.tritonserver import free_ports
    http, grpc, metrics = free_ports(3)
    log = tmp_path_factory.mktemp("entrypoint") / "server.log"
    proc = start_entrypoint(log, (http, grpc, metrics), SCORE_THRESHOLD="0.8")
    wait_ready(http, proc, log, "the entrypoint's server")
    try:
        yield {"proc": proc, "http": http, "metrics": metrics, "log": log}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_entrypoint_serves_with_the_environments_defaults(entrypoint_server, sample_images):
    from damo_client import DamoClient
    with DamoClient(f"127.0.0.1:{entrypoint_server['http']}") as client:
        assert client.connect().serving.score_threshold == 0.8
        detections = [d for p in sample_images for d in client.detect(p)]
    assert all(d.score > 0.8 for d in detections)
    from click.testing import CliRunner

    from damo_client.cli import cli
    said = CliRunner().invoke(cli, ["models", "--url", f"127.0.0.1:{entrypoint_server['http']}"])
    assert said.exit_code == 0 and "served defaults (a request's thresholds override them): score > 0.8" in said.output
    assert "damo_yolo → one python model" in entrypoint_server["log"].read_text()  # what the entrypoint said


def test_metrics_the_dashboards_use_exist_and_move(entrypoint_server, sample_images):
    from damo_client import DamoClient, InferenceError
    port = entrypoint_server["metrics"]
    used = {name for expr in promql_expressions().values()  # series names, not label values such as model names
            for name in re.findall(r"\b((?:nv|damo_yolo)_[a-z_]+)\b", re.sub(r'"[^"]*"', '""', expr))} - GPU_ONLY_SERIES
    before = scrape(port)
    good, bad = 6, 3
    with DamoClient(f"127.0.0.1:{entrypoint_server['http']}") as client:
        for i in range(good):
            client.detect(sample_images[i % len(sample_images)])
        for _ in range(bad):
            with pytest.raises(InferenceError):
                client.detect(b"\xff\xd8\xff not really a JPEG")
    after = scrape(port)
    present = after[0]
    assert used <= present, f"series the dashboard/alerts/adapter read but the server does not export: {used - present}"
    moved = {name: total(after, name, model="damo_yolo") - total(before, name, model="damo_yolo")
             for name in ("nv_inference_request_success", "nv_inference_queue_duration_us",
                          "nv_inference_compute_infer_duration_us", "nv_inference_request_summary_us_count")}
    assert moved["nv_inference_request_success"] >= good  # (Triton counts python-backend error answers here too)
    assert moved["nv_inference_queue_duration_us"] > 0 and moved["nv_inference_compute_infer_duration_us"] > 0
    assert moved["nv_inference_request_summary_us_count"] >= good
    errors = (total(after, "damo_yolo_request_errors_total", model="damo_yolo", reason="invalid_input")
              - total(before, "damo_yolo_request_errors_total", model="damo_yolo", reason="invalid_input"))
    assert errors == bad
    p99 = total(after, "nv_inference_request_summary_us", model="damo_yolo", quantile="0.99")
    assert p99 > 0  # the latency panels' quantiles are there and hold a value


def test_without_an_admin_key_the_admin_apis_stay_closed(entrypoint_server):
    """No ADMIN_KEY (as `docker run` without one): a random key nobody holds guards the admin APIs."""
    import urllib.error
    for path in ("/v2/logging", "/v2/systemsharedmemory/status", "/v2/trace/setting"):
        for headers in ({}, {"admin-key": ""}, {"admin-key": "guess-guess-guess-guess"}):
            request = urllib.request.Request(f"http://127.0.0.1:{entrypoint_server['http']}{path}", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 403, path
    assert "admin APIs (model-repository,shared-memory,logging,trace) closed (no ADMIN_KEY)" in (
        entrypoint_server["log"].read_text())


def test_sigterm_stops_the_server_cleanly(entrypoint_server):
    proc = entrypoint_server["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=40) == 0
