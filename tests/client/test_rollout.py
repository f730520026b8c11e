"""Two real servers behind damo_client's per-request gRPC balancing (gRPC's round_robin over every address of the
target, as a headless Service's name gives it): both serve, and one stopped with SIGTERM mid-load costs no
request — the stopping server's refusals and shutdown answers are retried on the other — and exits 0; a third
server started mid-run gets requests without the client doing anything."""
from __future__ import annotations

import asyncio
import json
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

ROOT = Path(__file__).resolve().parents[2]
ADDRESSES = ("127.0.0.2", "127.0.0.3")  # loopback addresses: two "pods" on the same ports
LATE = "127.0.0.4"  # a third, started mid-run (a pod the autoscaler adds)

pytestmark = pytest.mark.slow


def _serve(address: str, ports: tuple[int, int, int], log: Path) -> subprocess.Popen:
    http, grpc, metrics = ports
    env = {**os.environ, "MODEL_REPOSITORY": str(ROOT / "triton_models"), "LISTEN_ADDRESS": address,
           "HTTP_PORT": str(http), "GRPC_PORT": str(grpc), "METRICS_PORT": str(metrics),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # the bundled tritonserver
    with open(log, "w") as out:
        return subprocess.Popen(["bash", str(ROOT / "deploy" / "docker" / "entrypoint.sh")], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def _wait_ready(address: str, port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if urllib.request.urlopen(f"http://{address}:{port}/v2/health/ready", timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.3)
    proc.kill()
    pytest.fail(f"the server at {address} did not get ready:\n{log.read_text()[-3000:]}")


def _inferences(address: str, port: int) -> int:
    url = f"http://{address}:{port}/v2/models/damo_yolo/stats"
    (model,) = json.load(urllib.request.urlopen(url, timeout=5))["model_stats"]
    return int(model["inference_count"])


def test_a_replica_stopped_mid_load_fails_no_request_of_a_balanced_client(tmp_path, sample_images):
    from damo_client import AsyncDamoClient, DamoClient
    from damo_yolo.serving.tritonserver import free_ports
    ports = tuple(free_ports(3))
    http, grpc, _ = ports
    procs = {a: _serve(a, ports, tmp_path / f"{a}.log") for a in ADDRESSES}  # type: ignore[arg-type]
    try:
        for address, proc in procs.items():
            _wait_ready(address, http, proc, tmp_path / f"{address}.log")
        target = "ipv4:" + ",".join(f"{a}:{grpc}" for a in (*ADDRESSES, LATE))
        image = sample_images[0].read_bytes()
        done = threading.Event()
        served: Counter = Counter()
        failed: list[str] = []

        def sync_load() -> None:
            with DamoClient(target, "grpc", timeout=20) as client:
                while not done.is_set():
                    try:
                        client.detect(image)
                        served["sync"] += 1
                    except Exception as exc:  # counted and judged below
                        failed.append(f"sync: {type(exc).__name__}: {exc}")

        def async_load() -> None:
            async def main() -> None:
                async with AsyncDamoClient(target, "grpc", timeout=20) as client:
                    async def one() -> None:
                        while not done.is_set():
                            try:
                                await client.detect(image)
                                served["async"] += 1
                            except Exception as exc:
                                failed.append(f"async: {type(exc).__name__}: {exc}")
                    await asyncio.gather(one(), one())
            asyncio.run(main())

        threads = [threading.Thread(target=sync_load), threading.Thread(target=async_load)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(4)
            spread = {a: _inferences(a, http) for a in ADDRESSES}
            assert all(n > 0 for n in spread.values()), f"not balanced over both servers: {spread}"
            stopped, survivor = ADDRESSES
            at_stop = sum(served.values())
            started = time.monotonic()
            procs[stopped].send_signal(signal.SIGTERM)
            code = procs[stopped].wait(timeout=60)
            drain = time.monotonic() - started
            survivor_before = _inferences(survivor, http)
            time.sleep(2)
            survivor_after = _inferences(survivor, http)
            procs[LATE] = _serve(LATE, ports, tmp_path / f"{LATE}.log")  # type: ignore[arg-type]
            _wait_ready(LATE, http, procs[LATE], tmp_path / f"{LATE}.log")
            ready = time.monotonic()
            while _inferences(LATE, http) == 0 and time.monotonic() - ready < 30:
                time.sleep(0.2)
            joined = time.monotonic() - ready
        finally:
            done.set()
            for thread in threads:
                thread.join(timeout=60)
        print(f"\n[rollout] spread before the stop {spread}; {at_stop} requests before SIGTERM, "
              f"{sum(served.values())} in all; {len(failed)} failed; the stopped server exited {code} after "
              f"{drain:.1f} s; the third server's first request {joined:.1f} s after it was ready")
        assert not failed, failed[:5]
        assert code == 0, (tmp_path / f"{stopped}.log").read_text()[-2000:]
        assert survivor_after > survivor_before  # the other replica keeps serving
        assert _inferences(LATE, http) > 0, "the server started mid-run got no request in 30 s"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
