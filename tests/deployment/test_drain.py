"""A server stopped under load from damo_client (HTTP and gRPC, sync and async) drains and exits 0.

Triton at SIGTERM refuses new connections at once (so the kubelet's probes see it not ready) but keeps serving the
HTTP keep-alive connections already open, and waits for them to close before it unloads its models — until
--exit-timeout-secs, after which the bundled 2.51 crashes (SIGSEGV, exit 139). damo_client makes its connections
again once they are MAX_CONNECTION_AGE old, so they go within that time, and what the stopping server answers or
refuses is retried (on another replica behind a Service): every failure here is a refused connection after the
retries, never an error answer."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from test_manifests import DEPLOY, ROOT, render, wait_ready

pytestmark = pytest.mark.slow


def _serve(tmp_path: Path) -> tuple[subprocess.Popen, int, int]:
    from damo_yolo.serving.tritonserver import free_ports
    http, grpc, metrics = free_ports(3)
    env = {**os.environ, "MODEL_REPOSITORY": str(ROOT / "triton_models"), "LISTEN_ADDRESS": "127.0.0.1",
           "HTTP_PORT": str(http), "GRPC_PORT": str(grpc), "METRICS_PORT": str(metrics),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", str(DEPLOY / "docker" / "entrypoint.sh")], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    wait_ready(http, proc, log, "the entrypoint's server")
    return proc, http, grpc


def _accepts_new_connections(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status == 200
    except OSError:
        return False


def test_sigterm_under_damo_client_load_drains_and_exits_0(tmp_path, sample_images):
    from damo_client import AsyncDamoClient, DamoClient
    from damo_client.client import MAX_CONNECTION_AGE
    from damo_client.errors import ServerUnavailable
    proc, http, grpc = _serve(tmp_path)
    image = sample_images[0].read_bytes()
    done = threading.Event()
    served: Counter = Counter()
    failed: Counter = Counter()

    def outcome(name: str, exc: BaseException | None) -> None:
        if exc is None:
            served[name] += 1
        else:
            failed[f"{name}: {type(exc).__name__}"] += 1

    def sync_load(protocol: str, port: int) -> None:
        with DamoClient(f"127.0.0.1:{port}", protocol, timeout=20, backoff=0.2) as client:
            while not done.is_set():
                try:
                    client.detect(image)
                    outcome(f"sync {protocol}", None)
                except Exception as exc:  # counted and judged below
                    outcome(f"sync {protocol}", exc)

    def async_load(protocol: str, port: int) -> None:
        async def main() -> None:
            async with AsyncDamoClient(f"127.0.0.1:{port}", protocol, timeout=20, backoff=0.2) as client:
                async def one() -> None:
                    while not done.is_set():
                        try:
                            await client.detect(image)
                            outcome(f"async {protocol}", None)
                        except Exception as exc:
                            outcome(f"async {protocol}", exc)
                await asyncio.gather(one(), one())  # two requests in flight on one connection pool
        asyncio.run(main())

    threads = [threading.Thread(target=sync_load, args=("http", http)),
               threading.Thread(target=sync_load, args=("grpc", grpc)),
               threading.Thread(target=async_load, args=("http", http)),
               threading.Thread(target=async_load, args=("grpc", grpc))]
    for thread in threads:
        thread.start()
    try:
        time.sleep(4)  # every client connected and served
        assert set(served) == {"sync http", "sync grpc", "async http", "async grpc"} and not failed, (served, failed)
        before = sum(served.values())
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert not _accepts_new_connections(http)  # the probes see it gone: it leaves the Service's endpoints
        code = proc.wait(timeout=60)
        drain = time.monotonic() - stopped
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
        if proc.poll() is None:
            proc.kill()
    grace = render("cpu")["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    print(f"\n[drain] served {before} before SIGTERM, {sum(served.values()) - before} after; exit {code} after "
          f"{drain:.1f} s (grace period {grace} s, connections renewed every {MAX_CONNECTION_AGE:g} s); "
          f"failures {dict(failed)}")
    assert code == 0, (proc.returncode, (tmp_path / "server.log").read_text()[-2000:])
    assert drain < grace - 10  # inside the grace period with the preStop pause before it
    # nothing the stopping server answered surfaced as an error: only refused connections once it was gone
    assert all(name.endswith(ServerUnavailable.__name__) for name in failed), failed
