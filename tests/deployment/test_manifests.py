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
K8S_MINIMUM = "1.30"  # the oldest Kubernetes the manifests run on: the preStop sleep action is on from 1.30
K8S_VERSIONS = (K8S_MINIMUM, "1.34")  # checked against the minimum and a current release
STACK_ENV = DEPLOY / "monitoring" / "stack" / "stack.env"
OVERLAYS = ("cpu", "gpu")


def render(overlay: "str | Path") -> dict[str, dict]:
    """``kubectl kustomize`` of deploy/k8s/overlays/<overlay> (or of a kustomization folder): kind → object for the
    objects named damo-yolo, kind/name for the others."""
    import yaml
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl (with its kustomize) is needed to render the manifests in CI")
        pytest.skip("kubectl is not installed: the manifests cannot be rendered here")
    folder = DEPLOY / "k8s" / "overlays" / overlay if isinstance(overlay, str) else overlay
    run = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    objects = {}
    for doc in yaml.safe_load_all(run.stdout):
        name = doc["metadata"]["name"]
        key = doc["kind"] if name == "damo-yolo" else f"{doc['kind']}/{name}"
        assert key not in objects, f"two {key} objects"
        objects[key] = doc
    return objects


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    return request.param, render(request.param)


def test_every_object_validates_against_the_kubernetes_schemas(rendered):
    import kubernetes_validate
    overlay, objects = rendered
    assert set(objects) == {"Deployment", "Service", "Service/damo-yolo-headless", "HorizontalPodAutoscaler",
                            "PodDisruptionBudget", "NetworkPolicy"}, overlay
    for version in K8S_VERSIONS:
        for kind, obj in objects.items():
            kubernetes_validate.validate(obj, version, strict=True)  # raises on any unknown or mistyped field


def test_the_minimum_kubernetes_is_the_one_the_manifests_need():
    """The preStop sleep action is beta and on by default from Kubernetes 1.30 (1.28's API has no such field and
    rejects the Deployment; 1.29 accepts it behind an off feature gate and drops it): README states the minimum."""
    import kubernetes_validate
    objects = render("cpu")
    pre_stop = _container(objects)["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        assert tuple(map(int, K8S_MINIMUM.split("."))) >= (1, 30)
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(objects["Deployment"], "1.28", strict=True)
    readme = (ROOT / "README.md").read_text()
    assert f"Kubernetes {K8S_MINIMUM} or newer" in readme


def test_a_schema_error_is_caught():
    import kubernetes_validate
    objects = render("cpu")
    broken = json.loads(json.dumps(objects["Deployment"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_MINIMUM, strict=True)


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
    # a pod keeps serving while it leaves the endpoints (preStop), then its open connections go (the supervisor's
    # --drain in the entrypoint), then tritonserver unloads (--exit-timeout-secs): the grace period covers all three
    entrypoint = (DEPLOY / "docker" / "entrypoint.sh").read_text()
    drain = sum(int(re.search(rf"{option}=(\d+)", entrypoint)[1]) for option in ("--drain", "--exit-timeout-secs"))
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
    assert ":cpu-" in _container(cpu)["image"] and ":gpu-" in _container(gpu)["image"]
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
        assert "apt-get install -y --no-install-recommends haproxy" in text, name  # the entrypoint's proxy
    cpu = (DEPLOY / "docker" / "Dockerfile.cpu").read_text()
    code = re.sub(r"#.*", "", cpu)
    assert 'pip install ".[backend,openvino]"' in cpu and "torch" not in code and "server]" not in code  # no 2.51


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
    spreads = pod["topologySpreadConstraints"]
    assert [s["topologyKey"] for s in spreads] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    for spread in spreads:  # never Pending for want of a zone or node; each rollout's pods spread by themselves
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway" and spread["matchLabelKeys"] == ["pod-template-hash"]
        assert (spread["labelSelector"]["matchLabels"].items()
                <= deployment["spec"]["template"]["metadata"]["labels"].items())
    # node drains and upgrades take one pod at a time, however many the autoscaler runs
    assert objects["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in objects["PodDisruptionBudget"]["spec"]
    # scheduled by the device plugin's resource alone: clusters without GPU Feature Discovery schedule it too
    assert "nodeSelector" not in pod
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
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # stack.env's default
    service = render("cpu")["Service"]
    monitor = objects["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]} == {
        "http", "grpc", "metrics"} and monitor["endpoints"][0]["port"] == "metrics"
    assert objects["PrometheusRule"]["spec"]["groups"][0]["rules"] == alert_rules()
    assert 'job="damo-yolo"' in promql_expressions()["alert DamoYoloReplicaDown"]
    assert service["metadata"]["name"] == "damo-yolo"  # the job label the operator gives the targets
    adapter = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-adapter.yaml").read_text())
    # the operator's Service for its namespace's Prometheus: no release name in it
    assert (adapter["prometheus"]["url"], adapter["prometheus"]["port"]) == ("http://prometheus-operated", 9090)
    for expr in [r["expr"] for r in alert_rules()[:2]]:
        assert "sum by (namespace)" in expr  # alerts per namespace


def _stack_objects(folder: Path) -> dict[str, dict]:
    import yaml
    run = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return {doc["kind"]: doc for doc in yaml.safe_load_all(run.stdout)}


def test_another_release_name_and_namespace_are_one_value_each(tmp_path):
    """kube-prometheus-stack installed as `helm install kps ... -n observability`: changing stack.env alone
    relabels the ServiceMonitor and PrometheusRule for that release's selectors and opens the metrics port to that
    namespace's Prometheus; no other file under deploy/ names the release."""
    shutil.which("kubectl") or pytest.skip("kubectl is not installed")
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    stack_env = copy / "monitoring" / "stack" / "stack.env"
    text = stack_env.read_text()
    assert re.findall(r"^(\w+)=", text, re.MULTILINE) == ["release", "namespace"]
    stack_env.write_text(text.replace("release=kube-prometheus-stack", "release=kps")
                         .replace("namespace=monitoring", "namespace=observability"))
    for kind, obj in _stack_objects(copy / "monitoring" / "kube-prometheus-stack").items():
        assert obj["metadata"]["labels"] == {"release": "kps"}, kind
    for overlay in OVERLAYS:
        objects = render(copy / "k8s" / "overlays" / overlay)
        (_, metrics_rule) = objects["NetworkPolicy"]["spec"]["ingress"]
        assert metrics_rule["ports"] == [{"port": "metrics"}]
        (source,) = metrics_rule["from"]
        assert source["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "observability"}
        assert source["podSelector"]["matchExpressions"] == [
            {"key": "app.kubernetes.io/name", "operator": "In", "values": ["prometheus"]}]
        assert not any(key.startswith("ConfigMap") for key in objects)  # stack.env is read, never applied
    # the shipped value is the stack's default release, and it is written nowhere else
    default = render("cpu")["NetworkPolicy"]["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]
    assert default == {"kubernetes.io/metadata.name": "monitoring"}
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path != STACK_ENV and path.suffix in (".yaml", ".json", ".env"):
            code = re.sub(r"#.*", "", path.read_text())
            assert "release: kube-prometheus-stack" not in code and "kube-prometheus-stack-prometheus" not in code, path


def test_the_headless_service_lists_every_ready_pod_for_per_request_balancing():
    objects = render("cpu")
    headless, service = objects["Service/damo-yolo-headless"], objects["Service"]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is False
    assert headless["spec"]["selector"] == service["spec"]["selector"]
    # inference only: a metrics port here would make the ServiceMonitor scrape every pod twice
    assert {p["name"]: p["port"] for p in headless["spec"]["ports"]} == {"http": 8000, "grpc": 8001}


def test_the_gpu_product_selector_is_a_component(tmp_path):
    """The GPU overlay schedules by nvidia.com/gpu alone; the gpu-product component adds GPU Feature Discovery's
    product label for clusters of several GPU products."""
    overlay = tmp_path / "gpu-gfd"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{os.path.relpath(DEPLOY / 'k8s' / 'overlays' / 'gpu', overlay)}]\n"
        f"components: [{os.path.relpath(DEPLOY / 'k8s' / 'components' / 'gpu-product', overlay)}]\n")
    pod = render(overlay)["Deployment"]["spec"]["template"]["spec"]
    product = pod["nodeSelector"]["nvidia.com/gpu.product"]
    assert product and " " not in product  # GPU Feature Discovery's form of the name damo-export records
    assert "nodeSelector" not in render("gpu")["Deployment"]["spec"]["template"]["spec"]
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(render(overlay)["Deployment"], K8S_MINIMUM, strict=True)


def test_each_build_gets_its_own_tag_and_readmes_update_path_rolls_it_out(tmp_path):
    """A re-pushed tag never rolls out (the kubelet keeps the image it has): the overlays name a per-build tag, and
    README's update line, run on a copy, changes the Deployment's image to the new build's."""
    readme = (ROOT / "README.md").read_text()
    (line,) = [text for text in readme.splitlines() if text.startswith("sed -i") and "newTag" in text]
    for overlay in OVERLAYS:
        image = _container(render(overlay))["image"]
        assert not re.search(r":(cpu|gpu|latest)$", image), image
        copy = tmp_path / overlay
        shutil.copytree(DEPLOY, copy / "deploy")
        command = line.split("#")[0].replace("overlays/cpu", f"overlays/{overlay}")
        run = subprocess.run(["bash", "-c", command], cwd=copy, capture_output=True, text=True,
                             env={**os.environ, "TAG": f"{overlay}-20270101-120000-abc1234"})
        assert run.returncode == 0, run.stderr
        new = _container(render(copy / "deploy" / "k8s" / "overlays" / overlay))
        assert new["image"] == f"registry.example.com/damo-yolo:{overlay}-20270101-120000-abc1234"
