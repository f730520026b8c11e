"""A server stopped mid-load drains without failing a request and exits 0.

The entrypoint serves HTTP and gRPC through HAProxy (damo_yolo/serving/supervisor.py). At SIGTERM new connections
are refused at once (the kubelet's readiness probe fails: the pod leaves the Service), every open HTTP keep-alive
connection's next response carries `Connection: close` and every HTTP/2 (gRPC) connection gets GOAWAY, requests in
flight are answered; only once the connections have gone is Triton stopped, so it unloads with no client connected
and exits 0. Checked with plain tritonclient and urllib3 clients that hold their connections (the server's side)
and with damo_client, which retries what a stopping server refuses (on another replica behind a Service): every
failure is a refused connection, never an error answer."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from serving import start_entrypoint, wait_ready
from test_manifests import render

pytestmark = pytest.mark.slow


def _serve(tmp_path: Path) -> tuple[subprocess.Popen, int, int]:
    from damo_yolo.serving.tritonserver import free_ports
    http, grpc, metrics = free_ports(3)
    log = tmp_path / "server.log"
    proc = start_entrypoint(log, (http, grpc, metrics))
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


# what a client sees when it reaches no server (the listener closed): a retrying client redoes it elsewhere
GRPC_CONNECTION_FAILURES = ("failed to connect", "Connection refused", "Socket closed", "Connection reset")


class Load:
    """Requests from several keep-alive clients until ``done``: each recorded as (client, sent at, outcome, whether
    the answer said ``Connection: close``); outcome "ok", "connection" (no answer: the connection was refused or
    closed) or the error answer."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.records: list[tuple[str, float, str, bool]] = []
        self._lock = threading.Lock()

    def record(self, client: str, sent: float, outcome: str, close: bool = False) -> None:
        with self._lock:
            self.records.append((client, sent, outcome, close))
        if outcome != "ok":
            time.sleep(0.1)  # a refused client tries again, not in a tight loop

    def urllib3_http(self, name: str, port: int, image: bytes) -> None:
        """One keep-alive connection (urllib3's pool of one), the request built and the answer read by tritonclient:
        the answer's headers are visible."""
        import numpy as np
        import tritonclient.http as httpclient
        import urllib3
        request = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
        request.set_data_from_numpy(np.array([[image]], dtype=object))
        body, json_size = httpclient.InferenceServerClient.generate_request_body([request])
        headers = {"Inference-Header-Content-Length": str(json_size)} if json_size is not None else {}
        pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, retries=False, timeout=20)
        while not self.done.is_set():
            sent = time.monotonic()
            try:
                answer = pool.request("POST", "/v2/models/damo_yolo/infer", body=body, headers=headers)
            except urllib3.exceptions.HTTPError:  # refused, reset or closed without an answer
                self.record(name, sent, "connection")
                continue
            close = answer.headers.get("Connection", "").lower() == "close"
            if answer.status != 200:
                self.record(name, sent, f"HTTP {answer.status}: {answer.data[:100]!r}", close)
                continue
            result = httpclient.InferenceServerClient.parse_response_body(
                answer.data, header_length=answer.headers.get("Inference-Header-Content-Length"))
            self.record(name, sent, "ok" if result.as_numpy("num_detections") is not None else "no output", close)
        pool.close()

    def tritonclient_http(self, name: str, port: int, image: bytes) -> None:
        import numpy as np
        import tritonclient.http as httpclient
        from tritonclient.utils import InferenceServerException
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=20)
        while not self.done.is_set():
            request = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
            request.set_data_from_numpy(np.array([[image]], dtype=object))
            sent = time.monotonic()
            try:
                client.infer("damo_yolo", [request])
                self.record(name, sent, "ok")
            except InferenceServerException as exc:  # an answer: the server refused the request
                self.record(name, sent, f"answer: {exc}")
            except OSError:  # geventhttpclient: refused, reset or closed without an answer
                self.record(name, sent, "connection")
        client.close()

    def tritonclient_grpc(self, name: str, port: int, image: bytes) -> None:
        import numpy as np
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        while not self.done.is_set():
            request = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
            request.set_data_from_numpy(np.array([[image]], dtype=object))
            sent = time.monotonic()
            try:
                client.infer("damo_yolo", [request], client_timeout=20)
                self.record(name, sent, "ok")
            except InferenceServerException as exc:
                unreached = exc.status() == "StatusCode.UNAVAILABLE" and any(
                    said in str(exc) for said in GRPC_CONNECTION_FAILURES)
                self.record(name, sent, "connection" if unreached else f"answer: {exc}")
        client.close()


class RawGrpcConnection:
    """One HTTP/2 connection to the gRPC port (the h2 library), to see the frames a gRPC client's transport gets."""

    def __init__(self, port: int) -> None:
        import socket

        import h2.config
        import h2.connection
        self.port, self.sock = port, socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def events(self) -> list:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed without GOAWAY")
        events = self.conn.receive_data(data)
        self.sock.sendall(self.conn.data_to_send())
        return events

    def server_live(self) -> bool:
        """Triton's ServerLive RPC on this connection (an empty message: gRPC's 5-byte frame header)."""
        import h2.events
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, [(":method", "POST"), (":scheme", "http"),
                                        (":authority", f"127.0.0.1:{self.port}"),
                                        (":path", "/inference.GRPCInferenceService/ServerLive"),
                                        ("content-type", "application/grpc"), ("te", "trailers")])
        self.conn.send_data(stream, b"\0\0\0\0\0", end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        status = None
        while True:
            for event in self.events():
                if isinstance(event, h2.events.TrailersReceived):
                    status = dict(event.headers).get(b"grpc-status")
                if isinstance(event, h2.events.StreamEnded):
                    return status == b"0"

    def goaway(self, timeout: float) -> int:
        """The error code of the GOAWAY the server sends within ``timeout`` seconds (0: NO_ERROR, a graceful one)."""
        import h2.events
        self.sock.settimeout(timeout)
        while True:
            for event in self.events():
                if isinstance(event, h2.events.ConnectionTerminated):
                    return int(event.error_code)


def test_sigterm_under_keep_alive_load_tells_connections_to_go_and_exits_0(tmp_path, sample_images):
    """Plain keep-alive clients (urllib3, tritonclient HTTP and gRPC) under load, SIGTERM mid-load: every request
    sent before it is answered, the later ones fail only to connect (never an error answer: no 5xx, no unknown
    model), open connections are told to go, the server is not ready before it exits, and exits 0 within the
    Deployment's grace period; the models unload only after the connections have gone."""
    proc, http, grpc = _serve(tmp_path)
    image = sample_images[0].read_bytes()
    load = Load()
    clients = {"urllib3 http 1": (load.urllib3_http, http), "urllib3 http 2": (load.urllib3_http, http),
               "tritonclient http": (load.tritonclient_http, http),
               "tritonclient grpc 1": (load.tritonclient_grpc, grpc),
               "tritonclient grpc 2": (load.tritonclient_grpc, grpc)}
    threads = [threading.Thread(target=run, args=(name, port, image)) for name, (run, port) in clients.items()]
    raw = RawGrpcConnection(grpc)
    for thread in threads:
        thread.start()
    try:
        assert raw.server_live()
        deadline = time.monotonic() + 30  # every client connected and served
        while {r[0] for r in load.records if r[2] == "ok"} != set(clients) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert {r[0] for r in load.records if r[2] == "ok"} == set(clients), load.records
        time.sleep(1)  # under load
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        while _accepts_new_connections(http):  # the readiness probe's view (a new connection each time)
            assert time.monotonic() - stopped < 2, "still accepting 2 s after SIGTERM"
        not_ready = time.monotonic() - stopped
        running_when_not_ready = proc.poll() is None
        goaway = raw.goaway(timeout=10)
        told_grpc = time.monotonic() - stopped
        raw.sock.close()  # as a gRPC client does once its streams are done
        code = proc.wait(timeout=60)
        drain = time.monotonic() - stopped
    finally:
        load.done.set()
        for thread in threads:
            thread.join(timeout=30)
        if proc.poll() is None:
            proc.kill()
    spec = render("cpu")["Deployment"]["spec"]["template"]["spec"]
    grace = spec["terminationGracePeriodSeconds"]
    (container,) = spec["containers"]
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    # a request is stamped just before the client library sends it: one stamped in the last 50 ms before SIGTERM
    # may reach the server only after it, and counts with the later ones
    before = [r for r in load.records if r[1] < stopped - 0.05]
    after = [r for r in load.records if r[1] >= stopped - 0.05]
    failed = Counter(f"{r[0]}: {r[2]}" for r in load.records if r[2] != "ok")
    log = (tmp_path / "server.log").read_text()
    print(f"\n[drain] {len(before)} requests before SIGTERM, {sum(r[2] == 'ok' for r in after)} answered after it; "
          f"not ready after {not_ready:.2f} s, gRPC GOAWAY after {told_grpc:.2f} s, exit {code} after {drain:.1f} s "
          f"(preStop {pause} s + grace {grace} s); failures {dict(failed)}")
    assert code == 0, log[-3000:]
    assert running_when_not_ready and not_ready < 1  # not ready (refused) at once, long before the exit
    assert all(r[2] == "ok" for r in before), [r for r in before if r[2] != "ok"]  # in flight at SIGTERM: answered
    assert all(r[2] in ("ok", "connection") for r in after), failed  # no 5xx, no NOT_FOUND: only unreached
    for name in ("urllib3 http 1", "urllib3 http 2"):  # each keep-alive connection kept, then told to go once:
        closing = [r[3] for r in load.records if r[0] == name and r[2] == "ok"]  # its last answer, then refused
        assert closing == [False] * (len(closing) - 1) + [True], (name, closing)
    assert goaway == 0 and told_grpc < 2  # a graceful GOAWAY (NO_ERROR) on the open gRPC connection
    # the models unloaded only after the connections had gone
    assert log.index("supervisor: connections closed") < log.index("unloading models")
    assert drain < grace - pause  # inside the grace period with the preStop pause before it


def _descendants(pid: int) -> dict[int, tuple[str, str]]:
    """Every descendant of ``pid``: pid → (name, state)."""
    table: dict[int, tuple[int, str, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        state, ppid = tail.split()[:2]
        table[int(stat.parent.name)] = (int(ppid), head.split("(", 1)[1], state)
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, name, state) in table.items():
            if ppid == parent:
                found[child] = (name, state)
                frontier.append(child)
    return found


def test_processes_orphaned_by_a_crashed_server_are_reaped_and_stopped(tmp_path):
    """The supervisor is PID 1 in a container: the python-backend stubs of a tritonserver that died become its
    children. It collects them (no zombies) and stops those still running before it exits with the server's status,
    rather than leaving them to run on."""
    proc, _, _ = _serve(tmp_path)
    try:
        tree = _descendants(proc.pid)
        (server,) = [pid for pid, (name, _) in tree.items() if name == "tritonserver"]
        stubs = [pid for pid, (name, _) in tree.items() if name.startswith("triton_python")]
        assert stubs, tree  # the CPU model's instances run in stubs
        os.kill(server, signal.SIGKILL)  # a crash: no unload, the stubs are left without their parent
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "server.log").read_text()
    left = {pid: Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            for pid in stubs if Path(f"/proc/{pid}/stat").exists()}
    print(f"\n[orphans] tritonserver killed with {len(stubs)} python-backend stubs; the supervisor exited {code}; "
          f"stubs left: {left or 'none'}")
    assert code == 128 + signal.SIGKILL, log[-2000:]  # the server's status, as a shell reports it
    assert not left, (left, log[-2000:])  # neither running nor zombies
