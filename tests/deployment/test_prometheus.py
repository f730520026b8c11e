"""deploy/monitoring evaluated in a real Prometheus (Debian's prometheus 2.42, installed by scripts/setup.sh):
it scrapes two bundled tritonservers — the CPU target, and the GPU ensemble's layout with its stand-ins (the DALI
backend and the plan; tests/stand_ins) — labelled as the ServiceMonitor labels pods. Under load, the exact
adapter metricsQuery (label matchers filled as prometheus-adapter fills them) returns a value per pod that
rises with load on both targets and never exceeds the requests callers hold; 90 s of requests the server
rejects (NaN thresholds) leave it under the HPA's target; every dashboard expression and every operand of every
alert returns data.
promtool checks the rules, passes their unit tests, and fails them when an alert is broken."""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from serving import running_server, write_gpu_layout
from test_manifests import DEPLOY, GPU_ONLY_SERIES, NAMESPACE, RULES, alert_rules, promql_expressions

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PODS = {"cpu": "damo-yolo-cpu-0", "gpu": "damo-yolo-gpu-0"}
# cAdvisor's, scraped by the stack from the kubelet; kube-state-metrics' kube_* (pod start times, the HPA's
# conditions), which only a cluster has
NOT_FROM_TRITON = ("container_cpu_usage_seconds_total", "kube_")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: scripts/setup.sh installs Debian's prometheus package")
    return path


def _rules_file(folder: Path, rules: list[dict] | None = None) -> Path:
    spec = yaml.safe_load(RULES.read_text())["spec"]
    if rules is not None:
        spec["groups"][0]["rules"] = rules
    path = folder / "damo-yolo-rules.yml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_promtool_checks_and_unit_tests_the_rules(tmp_path):
    promtool = _tool("promtool")
    _rules_file(tmp_path)
    shutil.copy(RULES.with_name("prometheus-rule.test.yaml"), tmp_path)
    check = subprocess.run([promtool, "check", "rules", "damo-yolo-rules.yml"], cwd=tmp_path, capture_output=True,
                           text=True)
    assert check.returncode == 0 and "SUCCESS: 5 rules found" in check.stdout, check.stdout + check.stderr
    run = subprocess.run([promtool, "test", "rules", "prometheus-rule.test.yaml"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    # a broken alert (its threshold off by ten) fails the unit tests
    broken = alert_rules()
    broken[0]["expr"] = broken[0]["expr"].replace("0.05 *", "0.5 *")
    _rules_file(tmp_path, broken)
    run = subprocess.run([promtool, "test", "rules", "prometheus-rule.test.yaml"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert run.returncode != 0 and "DamoYoloHighErrorRate" in run.stdout + run.stderr


class Prometheus:
    """A real Prometheus on a free localhost port, scraping the given metrics ports every second."""

    def __init__(self, folder: Path, targets: dict[str, int]):
        from damo_yolo.serving.tritonserver import free_ports
        (self.port,) = free_ports(1)
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(_rules_file(folder))],
                  "scrape_configs": [{"job_name": "damo-yolo", "static_configs": [
                      {"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": NAMESPACE, "pod": PODS[name]}}
                      for name, port in targets.items()]}]}
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(folder / "prometheus.log", "w")
        self.proc = subprocess.Popen([_tool("prometheus"), f"--config.file={folder / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={folder / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        pytest.fail(f"Prometheus did not start: {(folder / 'prometheus.log').read_text()[-2000:]}")

    def query(self, expr: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = json.loads(urllib.request.urlopen(url, timeout=30).read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, sample_images):
    """Both targets served, scraped by a real Prometheus."""
    from damo_yolo.models import load_model
    from damo_yolo.serving.repository import validate_repository
    from damo_yolo.tools.export import export_repository
    checkpoint = ROOT / "demo" / "model" / "damoyolo_tinynasL18_Ns_synthetic.pth"
    root = tmp_path_factory.mktemp("prometheus")
    cpu_repo = export_repository(checkpoint, root / "cpu" / "triton_models")
    model, meta = load_model(checkpoint)
    gpu_repo = root / "gpu" / "triton_models"
    write_gpu_layout(gpu_repo, "damo_yolo", model, meta)
    validate_repository(gpu_repo)
    summaries = ("--metrics-config=summary_latencies=true",)  # as the images' entrypoint runs the server
    with running_server(cpu_repo, root / "cpu.log", extra_args=summaries) as cpu, \
            running_server(gpu_repo, root / "gpu.log", extra_args=summaries) as gpu:
        prometheus = Prometheus(root, {"cpu": cpu.metrics_port, "gpu": gpu.metrics_port})
        try:
            yield {"cpu": cpu, "gpu": gpu}, prometheus, [p.read_bytes() for p in sample_images]
        finally:
            prometheus.stop()


def _load(servers: dict, images: list[bytes], clients: int, seconds: float) -> int:
    """``clients`` concurrent callers per server for ``seconds``; returns how many requests were answered."""
    from damo_client import DamoClient
    answered, stop = [0], time.monotonic() + seconds

    def call(url):
        with DamoClient(url, timeout=120.0) as client:
            i = 0
            while time.monotonic() < stop:
                client.detect(images[i % len(images)])
                answered[0] += 1
                i += 1

    threads = [threading.Thread(target=call, args=(server.http_url,)) for server in servers.values()
               for _ in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return answered[0]


def _image_inputs(name: str, image: bytes, score_threshold: float | None = None) -> list:
    """tritonclient inputs of one encoded image for the CPU target (BYTES) or the GPU ensemble (UINT8), with a
    score threshold when one is given."""
    import tritonclient.http as httpclient
    if name == "cpu":
        inputs = [httpclient.InferInput("IMAGE", [1, 1], "BYTES")]
        inputs[0].set_data_from_numpy(np.array([[image]], dtype=object))
    else:
        inputs = [httpclient.InferInput("IMAGE", [1, len(image)], "UINT8")]
        inputs[0].set_data_from_numpy(np.frombuffer(image, np.uint8)[None])
    if score_threshold is not None:
        inputs.append(httpclient.InferInput("SCORE_THRESHOLD", [1, 1], "FP32"))
        inputs[1].set_data_from_numpy(np.full((1, 1), score_threshold, np.float32))
    return inputs


def _bad_requests(servers: dict, image: bytes) -> None:
    """Client errors each target counts in damo_yolo_request_errors_total: a bad image on the CPU target, a NaN
    threshold at the GPU ensemble's map-back step."""
    import tritonclient.http as httpclient
    for name, server in servers.items():
        client = httpclient.InferenceServerClient(server.http_url)
        inputs = (_image_inputs(name, b"\xff\xd8\xff not a JPEG") if name == "cpu"
                  else _image_inputs(name, image, score_threshold=np.nan))
        for _ in range(3):
            with pytest.raises(Exception):
                client.infer("damo_yolo", inputs)
        client.close()


def _rejected_only(servers: dict, image: bytes, clients: int, seconds: float) -> int:
    """``clients`` concurrent callers per server sending only requests the server rejects (NaN score thresholds),
    for ``seconds``; returns how many were refused."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException
    sent, stop = [0], time.monotonic() + seconds

    def call(name, server):
        client = httpclient.InferenceServerClient(server.http_url)
        # a valid image with a NaN score threshold: the CPU model refuses it before decoding, the GPU ensemble
        # at its map-back step, after preprocessing and the detector
        inputs = _image_inputs(name, image, score_threshold=np.nan)
        while time.monotonic() < stop:
            try:
                client.infer("damo_yolo", inputs)
            except InferenceServerException as exc:  # each is refused: that is the point
                assert "SCORE_THRESHOLD" in str(exc), f"{name}: {exc}"  # refused for its threshold, nothing else
                sent[0] += 1
            else:
                raise AssertionError(f"{name}: a request meant to be rejected was answered")
        client.close()

    threads = [threading.Thread(target=call, args=item) for item in servers.items() for _ in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return sent[0]


def _hpa_target() -> float:
    hpa = yaml.safe_load((DEPLOY / "k8s" / "base" / "hpa.yaml").read_text())
    (metric,) = hpa["spec"]["metrics"]
    return float(metric["pods"]["target"]["averageValue"])


def _adapter_query() -> str:
    adapter = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-adapter.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    pods = "|".join(PODS.values())
    return (rule["metricsQuery"].replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod=~"{pods}"')
            .replace("<<.GroupBy>>", "pod"))


def _per_pod(prometheus: Prometheus, expr: str) -> dict[str, float]:
    return {r["metric"]["pod"]: float(r["value"][1]) for r in prometheus.query(expr)}


def test_the_scaling_metric_rises_with_load_and_every_expression_has_data(monitored, capsys):
    import promql_parser
    servers, prometheus, images = monitored
    query = _adapter_query()
    target = _hpa_target()
    # the load phases are shorter than the adapter's 1-min rate window: each is read over its own seconds
    _load(servers, images, clients=1, seconds=15)  # one caller per server: about one request inside at a time
    time.sleep(1)  # the last scrape
    light = _per_pod(prometheus, query.replace("[1m]", "[15s]"))
    _bad_requests(servers, images[0])
    answered = _load(servers, images, clients=8, seconds=25)  # eight callers: the instances are saturated
    time.sleep(1)
    heavy = _per_pod(prometheus, query.replace("[1m]", "[20s]"))
    with capsys.disabled():
        print(f"\nadapter metric (requests in flight per pod) in a real Prometheus: 1 caller "
              f"{ {p: round(v, 2) for p, v in light.items()} }, 8 callers ({answered} requests) "
              f"{ {p: round(v, 2) for p, v in heavy.items()} }; HPA target {target:g}")
    assert set(light) == set(heavy) == set(PODS.values()), (light, heavy)
    for pod in PODS.values():
        # it tracks load on both targets (on the GPU ensemble without its steps: the ensemble times a request
        # from arrival to answer) and never exceeds the requests the callers hold (Little's law): no runaway
        assert 0.3 < light[pod] <= 1.05 and 3 * light[pod] < heavy[pod] <= 8 * 1.05, (pod, light[pod], heavy[pod])
    # one client sending only requests the server rejects, for 90 s, read with the adapter's exact query: under the
    # target on both targets. The GPU ensemble does not count a failed request's time at all; the CPU model holds
    # each refusal for about a millisecond, so one client as fast as it can stays well under one request in flight
    rejected = _rejected_only(servers, images[0], clients=1, seconds=90)
    time.sleep(1)
    hostile = _per_pod(prometheus, query)
    with capsys.disabled():
        print(f"adapter metric after 90 s of {rejected} rejected requests alone: "
              f"{ {p: round(v, 3) for p, v in hostile.items()} } (HPA target {target:g})")
    assert set(hostile) == set(PODS.values()) and all(v < target for v in hostile.values()), hostile
    assert hostile[PODS["gpu"]] < 0.05, hostile

    empty = []
    for where, expr in promql_expressions().items():
        if where.startswith("adapter") or any(s in expr for s in (*GPU_ONLY_SERIES, *NOT_FROM_TRITON)):
            continue  # adapter: checked above; GPU, cAdvisor, kube-state-metrics series: on a GPU host / cluster
        node = promql_parser.parse(expr)
        if where.startswith("alert") and isinstance(node, promql_parser.BinaryExpr) and str(node.op) in (
                ">", "<", "==", "!=", ">=", "<="):
            operands = [node.lhs, node.rhs]  # an alert is quiet when healthy: each side must have data
        else:
            operands = [node]
        for operand in operands:
            if isinstance(operand, promql_parser.NumberLiteral):
                continue
            if not prometheus.query(operand.prettify()):
                empty.append(f"{where}: {operand.prettify()}")
    assert not empty, "expressions without data in a real Prometheus:\n" + "\n".join(empty)
