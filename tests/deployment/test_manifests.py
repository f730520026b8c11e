"""deploy/: the Kubernetes overlays render with kustomize and every object validates against the Kubernetes API
schemas offline (kubernetes-validate); the wiring schemas cannot see holds (probes and Service on the container's
ports, the Service and PDB select the pods, the HPA scales the Deployment, the metrics port is the one scraped);
the images, the entrypoint and the Deployment agree; every PromQL expression parses."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.31"  # the oldest Kubernetes the manifests are checked against (autoscaling/v2, policy/v1)
OVERLAYS = ("cpu", "gpu")


def wait_ready(port: int, proc: subprocess.Popen, log: Path, what: str, timeout: float = 180) -> None:
    """Until the server ``proc`` started (its output in ``log``) answers ready on ``port``; the test fails with the
    log's tail when it exits or the time is up."""
    import time
    import urllib.request
    deadline = time.time() + timeout
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"{what} did not get ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def render(overlay: str) -> dict[str, dict]:
    """kind → object of ``kubectl kustomize deploy/k8s/overlays/<overlay>``."""
    import yaml
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl (with its kustomize) is needed to render the manifests in CI")
        pytest.skip("kubectl is not installed: the manifests cannot be rendered here")
    run = subprocess.run([kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    objects = {}
    for doc in yaml.safe_load_all(run.stdout):
        assert doc["kind"] not in objects, f"two {doc['kind']} objects"
        objects[doc["kind"]] = doc
    return objects


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    return request.param, render(request.param)


def test_every_object_validates_against_the_kubernetes_schemas(rendered):
    import kubernetes_validate
    overlay, objects = rendered
    assert set(objects) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                            "NetworkPolicy"}, overlay
    for kind, obj in objects.items():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)  # raises on any unknown or mistyped field


def test_a_schema_error_is_caught():
    import kubernetes_validate
    objects = render("cpu")
    broken = json.loads(json.dumps(objects["Deployment"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def _container(objects):
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_probes_ports_and_selectors_are_wired(rendered):
    overlay, objects = rendered
    deployment, service = objects["Deployment"], objects["Service"]
    container = _container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    for probe, path in (("startupProbe", "/v2/health/ready"), ("readinessProbe", "/v2/health/ready"),
                        ("livenessProbe", "/v2/health/live")):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], service["spec"]["selector"],
                     objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]):
        assert selector and selector.items() <= pod_labels.items(), selector
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment",
                                                                        deployment["metadata"]["name"])
    # a pod keeps serving while it leaves the endpoints (preStop) and while tritonserver drains
    # (--exit-timeout-secs in the entrypoint): the grace period covers both
    drain = int(re.search(r"--exit-timeout-secs=(\d+)", (DEPLOY / "docker" / "entrypoint.sh").read_text())[1])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop >= 5 and deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > pre_stop + drain
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/dev/shm" in mounts  # the python backend's shared memory, larger than a container's 64 MB default
    # threads from the pod's CPU limit (damo_yolo/serving/resources.py), not the node's count
    (cpu_env,) = [e for e in container["env"] if e["name"] == "DAMO_CPU_LIMIT"]
    assert cpu_env["valueFrom"]["resourceFieldRef"] == {"containerName": container["name"], "resource": "limits.cpu",
                                                        "divisor": "1"}


def test_overlays_differ_where_they_should():
    cpu, gpu = render("cpu"), render("gpu")
    assert _container(cpu)["image"].endswith(":cpu") and _container(gpu)["image"].endswith(":gpu")
    assert "nvidia.com/gpu" not in _container(cpu)["resources"].get("limits", {})
    assert _container(gpu)["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e.get("value") for e in _container(gpu)["env"]}
    assert env["MODEL_REPOSITORY"].startswith("s3://")  # pulled by Triton itself
    assert _container(gpu)["envFrom"] == [{"secretRef": {"name": "damo-yolo-model-store"}}]
    assert {e["name"]: e.get("value") for e in _container(cpu)["env"]}["MODEL_REPOSITORY"] == "/models"


def test_images_agree_with_the_deployment_and_the_platform():
    from damo_yolo.serving.platform import CONTAINER
    entrypoint = (DEPLOY / "docker" / "entrypoint.sh").read_text()
    defaults = {k: int(v) for k, v in re.findall(r"\$\{(\w+_PORT):-(\d+)\}", entrypoint)}
    assert defaults == {"HTTP_PORT": 8000, "GRPC_PORT": 8001, "METRICS_PORT": 8002}
    for name in ("Dockerfile.cpu", "Dockerfile.gpu"):
        text = (DEPLOY / "docker" / name).read_text()
        assert "EXPOSE 8000 8001 8002" in text and "USER 1000" in text and "HEALTHCHECK" in text, name
        assert "/v2/health/ready" in text and "ENTRYPOINT [\"/usr/local/bin/damo-yolo-serve\"]" in text, name
    for name in ("Dockerfile.cpu", "Dockerfile.gpu"):  # both on the patched NVIDIA release, nothing else
        text = (DEPLOY / "docker" / name).read_text()
        assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == [CONTAINER], name
        assert "check_python_backend.sh \\" in text and '--ignore-installed "setuptools' in text, name
        assert "TRITONSERVER=/opt/tritonserver/bin/tritonserver" in text, name
    cpu = (DEPLOY / "docker" / "Dockerfile.cpu").read_text()
    code = re.sub(r"#.*", "", cpu)
    assert 'pip install ".[backend]"' in cpu and "torch" not in code and "server]" not in code  # no bundled 2.51


def test_the_images_check_the_python_backends_python():
    """check_python_backend.sh against the real python-backend stubs of the nvidia-pytriton wheel: the stub of this
    Python passes, another one fails in one line naming both versions."""
    import sys
    import sysconfig

    from damo_yolo.serving.tritonserver import server_paths
    stubs = server_paths()["stub"].parents[1]
    here = "%d.%d" % sys.version_info[:2]
    other = "3.12" if here != "3.12" else "3.11"
    env = {**os.environ, "LD_LIBRARY_PATH": sysconfig.get_config_var("LIBDIR") or "",
           "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}  # python3: this interpreter
    script = str(DEPLOY / "docker" / "check_python_backend.sh")
    ok = subprocess.run(["bash", script, str(stubs / here / "triton_python_backend_stub")], env=env,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and f"python3 {here} is the python backend's Python" in ok.stdout, ok.stderr
    bad = subprocess.run(["bash", script, str(stubs / other / "triton_python_backend_stub")], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert f"the python backend's stub runs Python {other}, but python3 is {here}" in bad.stderr
    assert render("cpu")["Deployment"]["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 1000


NAMESPACE = "damo"  # what the tests put for the namespace the dashboard and the adapter select
GPU_ONLY_SERIES = {"nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes"}
RULES = DEPLOY / "monitoring" / "kube-prometheus-stack" / "prometheus-rule.yaml"


def alert_rules() -> list[dict]:
    """The alerting rules of the PrometheusRule (the one copy; plain Prometheus reads its spec as a rule file)."""
    import yaml
    return yaml.safe_load(RULES.read_text())["spec"]["groups"][0]["rules"]


def promql_expressions() -> dict[str, str]:
    """Every PromQL expression deploy/ holds: alert rules, dashboard panels, the adapter's queries (its template
    placeholders filled as prometheus-adapter fills them)."""
    import yaml
    exprs = {}
    for rule in alert_rules():
        exprs[f"alert {rule['alert']}"] = rule["expr"]
    dashboard = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:  # the dashboard's namespace variable as Grafana fills it
            exprs[f"panel {panel['title']} {target['refId']}"] = target["expr"].replace("$namespace", NAMESPACE)
    adapter = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-adapter.yaml").read_text())
    for i, rule in enumerate(adapter["rules"]["custom"]):
        exprs[f"adapter {i} series"] = rule["seriesQuery"].strip("'")
        exprs[f"adapter {i} query"] = (rule["metricsQuery"]
                                       .replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod="y"')
                                       .replace("<<.GroupBy>>", "pod"))
    return exprs


def test_every_promql_expression_parses_and_the_hpa_metric_is_served():
    import promql_parser
    import yaml
    exprs = promql_expressions()
    assert len(exprs) >= 10
    for where, expr in exprs.items():
        promql_parser.parse(expr)  # raises on a syntax error
    adapter = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-adapter.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    for overlay in OVERLAYS:
        (metric,) = render(overlay)["HorizontalPodAutoscaler"]["spec"]["metrics"]
        assert metric["pods"]["metric"]["name"] in served
    scrape = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-scrape.yaml").read_text())
    assert scrape["scrape_configs"][0]["job_name"] == "damo-yolo"
    assert 'job="damo-yolo"' in exprs["alert DamoYoloReplicaDown"]


def test_rollouts_and_pod_security(rendered):
    """The HPA owns the replica count; the restricted Pod Security Standard's seccomp profile; replicas spread
    over nodes; the GPU overlay selects the GPU product the plan was built for; the build context leaves out
    the virtual environment and data."""
    overlay, objects = rendered
    deployment = objects["Deployment"]
    assert "replicas" not in deployment["spec"], "an applied replicas field fights the HorizontalPodAutoscaler"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert (spread["labelSelector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items())
    if overlay == "gpu":
        product = pod["nodeSelector"]["nvidia.com/gpu.product"]
        assert product and " " not in product  # GPU Feature Discovery's form of the name damo-export records
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "data", "work_dirs"} <= set(ignored)


def test_kube_prometheus_stack_objects_select_what_they_should():
    """The ServiceMonitor and PrometheusRule render, carry the label the stack's default selectors match, and the
    ServiceMonitor selects the Service by its labels and scrapes its metrics port; the adapter asks the stack's
    Prometheus."""
    import yaml
    kubectl = shutil.which("kubectl") or pytest.skip("kubectl is not installed")
    run = subprocess.run([kubectl, "kustomize", str(DEPLOY / "monitoring" / "kube-prometheus-stack")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    objects = {doc["kind"]: doc for doc in yaml.safe_load_all(run.stdout)}
    assert set(objects) == {"ServiceMonitor", "PrometheusRule"}
    for obj in objects.values():
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = render("cpu")["Service"]
    monitor = objects["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]} == {
        "http", "grpc", "metrics"} and monitor["endpoints"][0]["port"] == "metrics"
    assert objects["PrometheusRule"]["spec"]["groups"][0]["rules"] == alert_rules()
    assert 'job="damo-yolo"' in promql_expressions()["alert DamoYoloReplicaDown"]
    assert service["metadata"]["name"] == "damo-yolo"  # the job label the operator gives the targets
    adapter = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-adapter.yaml").read_text())
    assert adapter["prometheus"]["url"].startswith("http://kube-prometheus-stack-prometheus.monitoring")
    for expr in [r["expr"] for r in alert_rules()[:2]]:
        assert "sum by (namespace)" in expr  # alerts per namespace
