"""Two real servers behind damo_client's per-request gRPC balancing: the client asks a real DNS server (Debian's
dnsmasq) for the name a headless Service would have, and gRPC's round_robin spreads requests over every address it
answers. Both serve; one stopped with SIGTERM mid-load (and taken out of DNS, as Kubernetes takes a terminating pod
out of the Service's endpoints) costs no request — the stopping server's refusals and shutdown answers are retried
on the other — and exits 0; a third server started mid-run and added to DNS when ready gets requests without the
client doing anything: it resolves the name again when it renews its connections."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from serving import start_entrypoint, wait_ready

ADDRESSES = ("127.0.0.2", "127.0.0.3")  # loopback addresses: two "pods" on the same ports
LATE = "127.0.0.4"  # a third, started mid-run (a pod the autoscaler adds)
NAME = "damo-yolo-headless.damo.svc.cluster.local"  # the headless Service's name in namespace damo

pytestmark = pytest.mark.slow


class DNS:
    """dnsmasq answering for NAME on 127.0.0.1:``port`` with the addresses last published (a hosts file it reads
    again at SIGHUP), with a TTL of 1 s, as the cluster's DNS answers for a headless Service's ready pods."""

    def __init__(self, folder: Path, port: int):
        dnsmasq = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
        if dnsmasq is None:
            message = "dnsmasq (Debian's dnsmasq-base; scripts/setup.sh installs it) serves the test's DNS"
            pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
        self.hosts, self.port = folder / "hosts", port
        self.hosts.write_text("")
        self.proc = subprocess.Popen(
            [dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", f"--port={port}", "--listen-address=127.0.0.1",
             "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={self.hosts}", "--local-ttl=1",
             "--local=/cluster.local/", "--log-queries", f"--log-facility={folder / 'dns.log'}",
             f"--pid-file={folder / 'dnsmasq.pid'}",  # not the system's /run/dnsmasq.pid
             # as root it would drop to its own user, which cannot read the test's private folder
             *(["--user=root"] if os.geteuid() == 0 else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def publish(self, *addresses: str) -> None:
        self.hosts.write_text("".join(f"{a} {NAME}\n" for a in addresses))
        self.proc.send_signal(signal.SIGHUP)

    def resolve(self) -> set[str]:
        """The addresses the server answers now, asked over the wire as the client's resolver asks."""
        import dns.resolver  # dnspython
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port = ["127.0.0.1"], self.port
        try:
            return {r.address for r in resolver.resolve(NAME, "A", lifetime=2)}
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return set()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _inferences(address: str, port: int) -> int:
    url = f"http://{address}:{port}/v2/models/damo_yolo/stats"
    (model,) = json.load(urllib.request.urlopen(url, timeout=5))["model_stats"]
    return int(model["inference_count"])


def test_a_replica_stopped_mid_load_fails_no_request_of_a_balanced_client(tmp_path, sample_images):
    from damo_client import AsyncDamoClient, DamoClient
    from damo_yolo.serving.tritonserver import free_ports
    ports = tuple(free_ports(3))
    http, grpc, _ = ports
    dns = DNS(tmp_path, free_ports(1)[0])
    procs = {a: start_entrypoint(tmp_path / f"{a}.log", ports, a) for a in ADDRESSES}  # type: ignore[arg-type]
    try:
        for address, proc in procs.items():
            wait_ready(http, proc, tmp_path / f"{address}.log", f"the server at {address}", host=address)
        dns.publish(*ADDRESSES)  # ready: in the Service's endpoints
        assert dns.resolve() == set(ADDRESSES), (tmp_path / "dns.log").read_text()[-2000:]
        target = f"dns://127.0.0.1:{dns.port}/{NAME}:{grpc}"  # a named DNS server, as gRPC's resolver takes it
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
            dns.publish(survivor)  # terminating: out of the endpoints (the client may still hold its connection)
            code = procs[stopped].wait(timeout=60)
            drain = time.monotonic() - started
            survivor_before = _inferences(survivor, http)
            time.sleep(2)
            survivor_after = _inferences(survivor, http)
            procs[LATE] = start_entrypoint(tmp_path / f"{LATE}.log", ports, LATE)  # type: ignore[arg-type]
            wait_ready(http, procs[LATE], tmp_path / f"{LATE}.log", f"the server at {LATE}", host=LATE)
            dns.publish(survivor, LATE)
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
        dns.close()
