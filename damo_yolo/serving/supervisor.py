"""The images' server process: tritonserver behind HAProxy, stopped in the order that fails no request.

Kubernetes stops a pod with the preStop pause (the pod leaves the Service's endpoints meanwhile), then SIGTERM.
Triton alone cannot drain open connections: at SIGTERM it refuses new ones but serves the HTTP keep-alive
connections already open without telling them to go (no ``Connection: close``) until ``--exit-timeout-secs`` has
run out, and that same budget then bounds the model unload. With a client connected to the end, the unload gets
0 s: "Exit timeout expired", and ``exit(1)`` runs the process's destructors while model instances still execute
requests that gRPC kept accepting — the bundled 2.51 dies of SIGSEGV (exit 139) in the response's output
allocation. 2.51 also stops gRPC only after the unload, so clients on open channels get ``NOT_FOUND: unknown
model``. Triton 2.72 (26.08) stops gRPC first, but its HTTP drain is the same. Neither can say ``Connection:
close``.

So HAProxy (a maintained proxy packaged by Debian and Ubuntu: HTTP/1.1 and HTTP/2, i.e. gRPC) listens on the
public ports and Triton on loopback ports behind it. HAProxy's soft stop (SIGUSR1) is the drain a client needs:
its listeners close at once (new connections are refused: the readiness probe fails), every open HTTP
connection's next response carries ``Connection: close``, every HTTP/2 (gRPC) connection gets GOAWAY, and
requests in flight are answered by Triton, which is still fully up. Once HAProxy has exited (its last connection
closed, or ``--drain`` seconds passed), Triton gets SIGTERM with no client connection left: it finishes any
execution, unloads its models within its whole exit timeout, and exits 0. This process exits with Triton's code.

In a container this process is PID 1: processes whose parent died become its children, and it must collect
(reap) them when they exit, or they stay as zombies in the process table. It makes itself their reaper anywhere
(Linux's child subreaper), so a python-backend stub orphaned by a crashed tritonserver is reaped here, and stopped
when the supervisor ends instead of running on, on a container or a shared host alike.

    python3 -m damo_yolo.serving.supervisor --address 0.0.0.0 --http-port 8000 --grpc-port 8001 -- \\
        tritonserver --model-repository /models ...
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from .tritonserver import free_ports

DRAIN = 15  # s: at most this long for open connections to go (HAProxy's hard-stop-after)
LOOPBACK = "127.0.0.1"
PROXY_CANDIDATES = ("haproxy", "/usr/sbin/haproxy")  # Debian/Ubuntu install it in /usr/sbin, off a user's PATH


def say(message: str) -> None:
    print(f"supervisor: {message}", file=sys.stderr, flush=True)


def proxy_config(address: str, http_port: int, grpc_port: int, triton_http: int, triton_grpc: int,
                 drain: float) -> str:
    """HAProxy's configuration: the public HTTP and gRPC ports in front of Triton's loopback ones."""
    return f"""\
global
    # the proxy's work is small next to the model's: one thread, the rest of the CPU for inference
    nbthread 1
    maxconn 4096
    # the soft stop (SIGUSR1) ends here even if a client keeps an idle connection and never sends again
    hard-stop-after {drain:g}s

defaults
    mode http
    timeout connect 5s
    # inference may queue behind others: as long as a client waits; an idle keep-alive connection is kept as long
    timeout client 15m
    timeout server 15m
    # at the soft stop an idle keep-alive connection is not cut under its client: its next request is answered
    # with Connection: close (HAProxy's default closes it at once, racing a request being sent)
    option idle-close-on-response

frontend http
    bind {address}:{http_port}
    default_backend triton_http

frontend grpc
    bind {address}:{grpc_port} proto h2
    default_backend triton_grpc

backend triton_http
    server triton {LOOPBACK}:{triton_http}

backend triton_grpc
    server triton {LOOPBACK}:{triton_grpc} proto h2
"""


def find_proxy(given: Optional[str]) -> str:
    for candidate in ([given] if given else PROXY_CANDIDATES):
        found = shutil.which(candidate)
        if found:
            return found
    raise FileNotFoundError(f"HAProxy not found ({given or ' or '.join(PROXY_CANDIDATES)}): the images install "
                            "Debian's/Ubuntu's haproxy package (deploy/docker/Dockerfile.*; scripts/setup.sh here)")


def triton_command(server: Sequence[str], triton_http: int, triton_grpc: int) -> list[str]:
    """The server's command with HTTP and gRPC on loopback ports (after the caller's options: the last one wins)."""
    return [*server, f"--http-address={LOOPBACK}", f"--http-port={triton_http}",
            f"--grpc-address={LOOPBACK}", f"--grpc-port={triton_grpc}"]


def exit_code(returncode: int) -> int:
    """A child's status as a shell reports it (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def dies_with_parent(sig: int) -> Callable[[], None]:
    """A preexec_fn: the child gets ``sig`` when this process dies, even of SIGKILL (Linux's PR_SET_PDEATHSIG), so
    neither server outlives its supervisor on a shared host."""
    def preexec() -> None:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    return preexec


def adopt_orphans() -> None:
    """Make this process the reaper of its orphaned descendants (Linux's PR_SET_CHILD_SUBREAPER), as PID 1 is."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


def adopted(ours: Sequence[subprocess.Popen]) -> list[int]:
    """This process's children other than ``ours``: orphans it adopted."""
    me, mine, found = os.getpid(), {p.pid for p in ours}, []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if ppid == me and int(stat.parent.name) not in mine:
            found.append(int(stat.parent.name))
    return found


def reap(ours: Sequence[subprocess.Popen]) -> int:
    """Collect the adopted children that have exited (never ``ours``: Popen waits for those); how many."""
    reaped = 0
    for pid in adopted(ours):
        try:
            reaped += os.waitpid(pid, os.WNOHANG)[0] == pid
        except ChildProcessError:
            pass
    return reaped


def stop_adopted(ours: Sequence[subprocess.Popen], grace: float = 5) -> None:
    """SIGTERM the adopted children still running (orphans of a server that died), SIGKILL after ``grace`` s, and
    reap them all."""
    pids = adopted(ours)
    if not pids:
        return
    say(f"stopping {len(pids)} process(es) the server left behind: {' '.join(map(str, sorted(pids)))}")
    deadline = time.monotonic() + grace
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        while adopted(ours) and time.monotonic() < deadline:
            reap(ours)
            time.sleep(0.05)
        reap(ours)
        pids, deadline = adopted(ours), time.monotonic() + grace
        if not pids:
            return


def wait_for_first(procs: Sequence[subprocess.Popen], stop: threading.Event) -> None:
    """Until a signal asks to stop or one of ``procs`` exits; adopted children that exit meanwhile are reaped."""
    while not stop.is_set() and all(p.poll() is None for p in procs):
        reap(procs)
        stop.wait(0.2)


def drain(proxy: subprocess.Popen, server: subprocess.Popen, limit: float) -> int:
    """Soft-stop the proxy, wait for its connections to go, then stop the server; the server's exit code."""
    started = time.monotonic()
    if proxy.poll() is None:
        say("stopping: new connections refused (not ready); open ones told to go (HTTP Connection: close, gRPC "
            f"GOAWAY) while requests in flight finish, at most {limit:g} s")
        proxy.send_signal(signal.SIGUSR1)
        try:
            proxy.wait(timeout=limit + 5)  # hard-stop-after ends it at ``limit``; the margin is for a stuck one
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()
        say(f"connections closed after {time.monotonic() - started:.1f} s: stopping tritonserver")
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        server.wait()  # Triton's --exit-timeout-secs bounds it
    code = exit_code(server.returncode)
    say(f"tritonserver exited {code}, {time.monotonic() - started:.1f} s after the stop began")
    return code


def supervise(proxy_cmd: list[str], server_cmd: list[str], limit: float) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    adopt_orphans()
    server = subprocess.Popen(server_cmd, preexec_fn=dies_with_parent(signal.SIGTERM))
    proxy = subprocess.Popen(proxy_cmd, preexec_fn=dies_with_parent(signal.SIGKILL))
    try:
        return serve_until_stopped(proxy, server, stop, limit)
    finally:
        stop_adopted([server, proxy])


def serve_until_stopped(proxy: subprocess.Popen, server: subprocess.Popen, stop: threading.Event,
                        limit: float) -> int:
    wait_for_first([server, proxy], stop)
    if server.poll() is not None:  # the server failed (or was stopped by someone else): nothing left to drain
        proxy.kill()
        proxy.wait()
        say(f"tritonserver exited {exit_code(server.returncode)}")
        return exit_code(server.returncode)
    if proxy.poll() is not None:
        say(f"HAProxy exited {exit_code(proxy.returncode)}: stopping tritonserver")
        drain(proxy, server, limit)
        return exit_code(proxy.returncode) or 1
    return drain(proxy, server, limit)


def main(argv: Optional[list] = None) -> int:
    """``python -m damo_yolo.serving.supervisor [options] -- TRITONSERVER ARGS...``: serve HTTP and gRPC through
    HAProxy on ``--address`` and drain on SIGTERM (module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m damo_yolo.serving.supervisor", description=main.__doc__)
    parser.add_argument("--address", default="0.0.0.0", help="where HTTP and gRPC listen")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--drain", type=float, default=DRAIN,
                        help="seconds at most for open connections to go at SIGTERM [%(default)g]")
    parser.add_argument("--proxy", default=os.environ.get("HAPROXY"), help="HAProxy's binary [haproxy]")
    parser.add_argument("server", nargs=argparse.REMAINDER, help="-- then the tritonserver command")
    args = parser.parse_args(argv)
    server = args.server[1:] if args.server[:1] == ["--"] else args.server
    if not server:
        parser.error("the tritonserver command is missing (after --)")
    try:
        proxy = find_proxy(args.proxy)
    except FileNotFoundError as exc:
        say(str(exc))
        return 1
    triton_http, triton_grpc = free_ports(2)
    folder = Path(tempfile.mkdtemp(prefix="damo-haproxy-"))  # /tmp: an emptyDir under the read-only root
    try:
        config = folder / "haproxy.cfg"
        config.write_text(proxy_config(args.address, args.http_port, args.grpc_port, triton_http, triton_grpc,
                                       args.drain))
        return supervise([proxy, "-f", str(config), "-db"], triton_command(server, triton_http, triton_grpc),
                         args.drain)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
