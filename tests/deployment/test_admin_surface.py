"""The admin surface is closed by default: the rendered Deployment's container run as Kubernetes would run it —
its environment and arguments from `kubectl kustomize`, the image's entrypoint, a read-only root filesystem with
only the Deployment's emptyDirs writable — on the real tritonserver. Every restricted HTTP endpoint and gRPC
method answers 403 / UNAVAILABLE without the operator's header and opens with it; inference, health, metadata,
model configuration and statistics answer without it. The manifests hold the NetworkPolicy, no service-account
token and the read-only root."""
from __future__ import annotations

import math
import os
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from serving import wait_ready
from test_manifests import DEPLOY, OVERLAYS, ROOT, render

pytestmark = pytest.mark.slow

SECRET = "operator-secret.0123456789"  # the value the test puts in the Secret damo-yolo-admin
IMAGE_HOME = "/home/triton"  # HOME in both images (deploy/docker/Dockerfile.*)

# (method, path) → the restricted category it belongs to (Triton's restricted-API categories)
RESTRICTED_HTTP = {
    ("POST", "/v2/repository/index"): "model-repository",
    ("POST", "/v2/repository/models/damo_yolo/unload"): "model-repository",
    ("POST", "/v2/repository/models/damo_yolo/load"): "model-repository",
    ("GET", "/v2/systemsharedmemory/status"): "shared-memory",
    ("POST", "/v2/systemsharedmemory/region/probe/register"): "shared-memory",
    ("POST", "/v2/systemsharedmemory/unregister"): "shared-memory",
    ("GET", "/v2/cudasharedmemory/status"): "shared-memory",
    ("POST", "/v2/cudasharedmemory/region/probe/register"): "shared-memory",
    ("POST", "/v2/cudasharedmemory/unregister"): "shared-memory",
    ("GET", "/v2/logging"): "logging",
    ("POST", "/v2/logging"): "logging",
    ("GET", "/v2/trace/setting"): "trace",
    ("POST", "/v2/trace/setting"): "trace",
    ("GET", "/v2/models/damo_yolo/trace/setting"): "trace",
}
OPEN_HTTP = ["/v2/health/live", "/v2/health/ready", "/v2/models/damo_yolo/ready", "/v2", "/v2/models/damo_yolo",
             "/v2/models/damo_yolo/config", "/v2/models/damo_yolo/stats"]
# tritonclient.grpc methods of the restricted protocols (arguments that change nothing)
RESTRICTED_GRPC = {
    "get_model_repository_index": (), "get_system_shared_memory_status": (), "unregister_system_shared_memory": (),
    "get_cuda_shared_memory_status": (), "unregister_cuda_shared_memory": (), "get_log_settings": (),
    "get_trace_settings": (),
}


def container_of(objects: dict) -> dict:
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def environment_of(container: dict, secrets: dict) -> dict[str, str]:
    """The container's environment as the kubelet fills it: plain values, the downward API's CPU limit (rounded up,
    divisor 1) and Secret keys from ``secrets`` ((name, key) → value; an optional one that is absent is left out)."""
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        source = var["valueFrom"]
        if "resourceFieldRef" in source:
            limit = container["resources"]["limits"][source["resourceFieldRef"]["resource"].split(".")[1]]
            env[var["name"]] = str(math.ceil(float(limit)))
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            if (ref["name"], ref["key"]) in secrets:
                env[var["name"]] = secrets[ref["name"], ref["key"]]
            else:
                assert ref.get("optional"), f"{var['name']}: a required Secret key the test does not provide"
        else:
            raise AssertionError(f"{var['name']}: a value source the test does not fill: {source}")
    return env


def read_only_root_script(writable: list[str], keep: list[str], command: list[str]) -> str:
    """A bash script for ``unshare --mount``: a fresh tmpfs on each path of ``writable`` (the Deployment's emptyDirs;
    a missing one gets a read-only tmpfs scaffold for its folder), the paths of ``keep`` (this checkout, the Python
    installation) still visible read-only wherever a tmpfs covers them, the root filesystem read-only; then
    ``command``."""
    q = shlex.quote
    lines, holders = ["set -euo pipefail", "mount -t tmpfs holders /mnt"], iter(range(1000))

    def cover(path: str, options: str = "") -> None:  # a tmpfs on path, the kept paths beneath it put back
        hidden = [(k, f"/mnt/{next(holders)}") for k in keep if Path(k).is_relative_to(path)]
        for k, holder in hidden:
            lines.extend([f"mkdir -p {holder}", f"mount --rbind {q(k)} {holder}"])
        lines.append(f"mount -t tmpfs {options} tmpfs {q(path)}")
        for k, holder in hidden:
            lines.extend([f"mkdir -p {q(k)}", f"mount --move {holder} {q(k)}", f"mount -o remount,bind,ro {q(k)}"])

    scaffolds = []
    for path in sorted(writable):
        if not Path(path).exists():
            folder = Path(path).parent
            while not folder.exists():
                folder = folder.parent
            assert folder != Path("/"), path
            cover(str(folder))
            lines.append(f"mkdir -p {q(path)}")
            scaffolds.append(str(folder))
        cover(path, "-o mode=1777")
    lines += [f"mount -o remount,ro {q(folder)}" for folder in scaffolds]
    lines += ["mount -o remount,bind,ro /", "exec " + " ".join(q(c) for c in command)]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """The CPU overlay's container, its Secret set, served on free localhost ports from a read-only root."""
    from damo_yolo.serving.tritonserver import free_ports
    if shutil.which("unshare") is None or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("a read-only root needs unshare and root (both are there in CI)")
        pytest.skip("a read-only root needs unshare and root")
    objects = render("cpu")
    container = container_of(objects)
    writable = [m["mountPath"] for m in container["volumeMounts"]]
    http, grpc, metrics = free_ports(3)
    env = {**environment_of(container, {("damo-yolo-admin", "admin-key"): SECRET}),
           # this host instead of the pod's network: the ports and the loopback address alone differ
           "HTTP_PORT": str(http), "GRPC_PORT": str(grpc), "METRICS_PORT": str(metrics), "LISTEN_ADDRESS": "127.0.0.1",
           "MODEL_REPOSITORY": str(ROOT / "triton_models"),  # the repository the CPU image bakes in at /models
           "HOME": IMAGE_HOME, "PYTHONDONTWRITEBYTECODE": "1", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH", "")}
    command = ["bash", str(DEPLOY / "docker" / "entrypoint.sh"), *container.get("args", [])]
    assert "command" not in container  # the image's ENTRYPOINT runs
    keep = sorted({str(ROOT), sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parents[1])})
    script = read_only_root_script(writable, keep, command)
    log = tmp_path_factory.mktemp("deployed") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["unshare", "--mount", "bash", "-c", script], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    wait_ready(http, proc, log, "the Deployment's container")
    try:
        yield {"http": http, "grpc": grpc, "log": log, "proc": proc, "writable": writable}
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def http_status(port: int, method: str, path: str, headers: dict | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {},
                                     data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


def test_restricted_http_endpoints_need_the_operators_header(deployed):
    port = deployed["http"]
    without = {endpoint: http_status(port, *endpoint) for endpoint in RESTRICTED_HTTP}
    assert set(without.values()) == {403}, {e: s for e, s in without.items() if s != 403}
    wrong = {e: http_status(port, *e, headers={"admin-key": "x" * len(SECRET)}) for e in RESTRICTED_HTTP}
    assert set(wrong.values()) == {403}
    # with the header each endpoint is past the restriction: it answers for itself (a load/unload is refused by
    # --model-control-mode=none, registering a region that does not exist fails: 400, never 403)
    opened = {e: http_status(port, *e, headers={"admin-key": SECRET}) for e in RESTRICTED_HTTP}
    assert 403 not in opened.values(), opened
    assert opened["GET", "/v2/logging"] == opened["GET", "/v2/systemsharedmemory/status"] == 200
    assert opened["POST", "/v2/repository/index"] == 200
    assert http_status(port, "GET", "/v2/models/damo_yolo/ready") == 200  # the model is still loaded


def test_inference_health_and_metadata_stay_open(deployed, sample_images):
    from damo_client import DamoClient
    for path in OPEN_HTTP:
        assert http_status(deployed["http"], "GET", path) == 200, path
    for url, protocol in ((f"127.0.0.1:{deployed['http']}", "http"), (f"127.0.0.1:{deployed['grpc']}", "grpc")):
        with DamoClient(url, protocol=protocol) as client:
            assert client.connect().serving.class_names  # model configuration read without the header
            detections = [d for image in sample_images[:3] for d in client.detect(image)]
        assert detections, protocol  # inference answered (200) without the header and found objects


def test_restricted_grpc_protocols_need_the_operators_header(deployed):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{deployed['grpc']}")
    metadata = {"triton-grpc-protocol-admin-key": SECRET}  # Triton's prefix for restricted gRPC metadata keys
    for method, args in RESTRICTED_GRPC.items():
        with pytest.raises(InferenceServerException, match="This protocol is restricted") as refused:
            getattr(client, method)(*args)
        assert refused.value.status() == "StatusCode.UNAVAILABLE", method
        with pytest.raises(InferenceServerException, match="restricted"):
            getattr(client, method)(*args, headers={"triton-grpc-protocol-admin-key": "x" * len(SECRET)})
        getattr(client, method)(*args, headers=metadata)  # opens with the operator's key
    assert client.get_server_metadata().name == "triton"
    assert client.is_model_ready("damo_yolo")
    client.close()


def test_served_from_a_read_only_root_with_only_the_emptydirs_writable(deployed):
    """The server and its python backend stubs ran from a root they could not write: every place they write is
    one of the Deployment's emptyDirs. The entrypoint said the admin APIs are behind the header, not the key."""
    log = deployed["log"].read_text()
    assert "admin APIs (model-repository,shared-memory,logging,trace) need the header admin-key" in log
    assert SECRET not in log
    assert sorted(deployed["writable"]) == ["/dev/shm", IMAGE_HOME, "/tmp"]
    probe = subprocess.run(["unshare", "--mount", "bash", "-c",
                            read_only_root_script(deployed["writable"], [str(ROOT)], ["touch", str(ROOT / "x")])],
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "Read-only file system" in probe.stderr  # the sandbox holds


def test_the_manifests_close_the_pod(tmp_path):
    """NetworkPolicy: inference ports from labelled clients, metrics from the monitoring namespace's Prometheus
    alone, selectors kustomize left as written; no service-account token; a read-only root; the admin key from an
    optional Secret."""
    for overlay in OVERLAYS:
        objects = render(overlay)
        pod = objects["Deployment"]["spec"]["template"]
        container = container_of(objects)
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert all("emptyDir" in volumes[m["name"]] for m in container["volumeMounts"]), overlay
        (key,) = [e for e in container["env"] if e["name"] == "ADMIN_KEY"]
        assert key["valueFrom"]["secretKeyRef"] == {"name": "damo-yolo-admin", "key": "admin-key", "optional": True}
        policy = objects["NetworkPolicy"]["spec"]
        assert policy["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert policy["policyTypes"] == ["Ingress"]
        ports = {p["name"] for p in container["ports"]}
        rules = {tuple(sorted(p["port"] for p in rule["ports"])): rule["from"] for rule in policy["ingress"]}
        assert set(rules) == {("grpc", "http"), ("metrics",)} and {p for r in rules for p in r} == ports
        client = {"key": "damo-yolo/client", "operator": "In", "values": ["true"]}
        assert rules["grpc", "http"] == [{"podSelector": {"matchExpressions": [client]}},
                                         {"namespaceSelector": {"matchLabels": {"damo-yolo/client": "true"}}}]
        (scraper,) = rules["metrics",]
        assert scraper["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
        assert scraper["podSelector"] == {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In",
                                                                "values": ["prometheus"]}]}


def test_the_entrypoint_refuses_a_weak_key_or_a_bad_header_in_one_line(tmp_path):
    env = {**os.environ, "MODEL_REPOSITORY": str(tmp_path / "none") + "://x", "TRITONSERVER": "/bin/false"}
    for change, said in (({"ADMIN_KEY": "short"}, "ADMIN_KEY must be at least 16 characters"),
                         ({"ADMIN_KEY": "has spaces in it, sixteen+"}, "ADMIN_KEY must be at least 16 characters"),
                         ({"ADMIN_HEADER": "Admin Key"}, "ADMIN_HEADER must be a lower-case header name"),
                         ({"ADMIN_APIS": "logging;trace"}, "ADMIN_APIS must be Triton API categories")):
        run = subprocess.run(["bash", str(DEPLOY / "docker" / "entrypoint.sh")], env={**env, **change},
                             capture_output=True, text=True, timeout=30)
        assert run.returncode == 2 and run.stderr.count("\n") == 1 and said in run.stderr, (change, run.stderr)


def test_damo_client_models_with_and_without_the_operators_key(deployed):
    """The repository index is an admin API: `damo-client models` shows the model asked for without the key, every
    model with it, and a wrong key in one line."""
    from click.testing import CliRunner

    from damo_client.cli import cli
    for protocol, port in (("http", deployed["http"]), ("grpc", deployed["grpc"])):
        url = ["--url", f"127.0.0.1:{port}", "--protocol", protocol]
        plain = CliRunner().invoke(cli, ["models", *url])
        assert plain.exit_code == 0, plain.output
        assert "damo_yolo  1        READY" in plain.output and "--admin-key or DAMO_ADMIN_KEY" in plain.output
        assert "served defaults" in plain.output
        keyed = CliRunner().invoke(cli, ["models", *url], env={"DAMO_ADMIN_KEY": SECRET})
        assert keyed.exit_code == 0 and "damo_yolo  1        READY" in keyed.output, keyed.output
        assert "--admin-key" not in keyed.output
        wrong = CliRunner().invoke(cli, ["models", *url, "--admin-key", "x" * 20])
        assert wrong.exit_code == 1 and "the admin key was refused" in wrong.output
        assert wrong.output.count("\n") == 1, wrong.output


def test_sigterm_still_stops_the_deployed_server_cleanly(deployed):
    deployed["proc"].terminate()
    assert deployed["proc"].wait(timeout=40) == 0  # last: it stops the module's server
