"""`tritonserver`: the Triton Inference Server bundled in the ``nvidia-pytriton`` wheel, on any host.

Passes every argument through to the real binary and adds what a plain install lacks:
- ``--backend-directory``: a copy of the wheel's backends with the python-backend stub of this Python
  version beside ``libtriton_python.so`` (made once, under ~/.cache/damo-yolo);
- the shared-library path: the wheel's own libraries and this interpreter's ``libpython`` (the stub must
  run the interpreter whose packages the models import);
- ``--http-address/--grpc-address/--metrics-address 127.0.0.1``: the server listens on localhost, and only
  there: this server predates NVIDIA's Triton security fixes (README "Security"), so another address is refused;
  the images of deploy/docker serve on a network with NVIDIA's patched release.

    tritonserver --model-repository triton_models
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Optional

import click

from damo_yolo.cli import run

LOCAL_ONLY = ("--http-address", "--grpc-address", "--metrics-address")
LOOPBACK = ("127.", "::1", "localhost")
EXPOSURE_REFUSED = ("the bundled tritonserver (2.51, from nvidia-pytriton 0.7.0) predates NVIDIA's Triton security "
                    "fixes (README \"Security\"): it serves this host only, not {option} {address}; serve on a network "
                    "with the images of deploy/docker (NVIDIA's patched Triton)")


class ServerNotInstalled(RuntimeError):
    pass


def _site_packages() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise ServerNotInstalled("the bundled Triton server is not installed: pip install '.[server]' "
                                 "(nvidia-pytriton==0.7.0), or run scripts/setup.sh") from exc
    return Path(pytriton.__file__).resolve().parents[1]


def server_paths() -> dict[str, Path]:
    sp = _site_packages()
    root = sp / "pytriton" / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    paths = {"binary": root / "bin" / "tritonserver", "backends": root / "backends",
             "stub": root / "python_backend_stubs" / version / "triton_python_backend_stub",
             "libs": sp / "nvidia_pytriton.libs"}
    for name, path in paths.items():
        if not path.exists():
            raise ServerNotInstalled(f"the nvidia-pytriton wheel lacks {name} ({path}); reinstall it with pip")
    return paths


def backend_directory(paths: dict[str, Path], cache_root: Optional[Path] = None) -> Path:
    """The backends folder with the stub in place, created once per wheel/Python version."""
    cache_root = cache_root or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "damo-yolo"
    key = f"{paths['binary'].stat().st_mtime_ns}-py{sys.version_info.major}.{sys.version_info.minor}"
    target = cache_root / f"triton-backends-{key}"
    ready = target / ".ready"
    if not ready.exists():
        tmp = cache_root / f".tmp-backends-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(paths["backends"], tmp / "backends", symlinks=True)
        shutil.copy2(paths["stub"], tmp / "backends" / "python" / "triton_python_backend_stub")
        (tmp / ".ready").write_text("ok\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target / "backends"


def server_environment(paths: dict[str, Path], base: Optional[dict] = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    parts = [str(paths["libs"]), libdir] + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
    env["LD_LIBRARY_PATH"] = ":".join(dict.fromkeys(p for p in parts if p))
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports free on localhost right now (for test and benchmark servers)."""
    import socket
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def exposed_address(args: list[str]) -> Optional[tuple[str, str]]:
    """The first (option, address) of ``args`` that listens beyond this host (``--opt=value`` or ``--opt value``)."""
    for i, arg in enumerate(args):
        option, _, value = arg.partition("=")
        if option in LOCAL_ONLY:
            address = value if _ else (args[i + 1] if i + 1 < len(args) else "")
            if not address.startswith(LOOPBACK):
                return option, address
    return None


def server_command(args: list[str], backends: Path, binary: Path) -> list[str]:
    exposed = exposed_address(args)
    if exposed:
        raise ValueError(EXPOSURE_REFUSED.format(option=exposed[0], address=exposed[1]))
    cmd = [str(binary), *args]
    given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    if "--backend-directory" not in given:
        cmd.append(f"--backend-directory={backends}")
    for option in LOCAL_ONLY:
        if option not in given:
            cmd.append(f"{option}=127.0.0.1")
    return cmd


PORT_TAKEN = "already in use"  # the server's words when a port it was given is bound by another process
SERVING_HTTP = "Started HTTPService at"  # ... and once it listens on its HTTP port


class LocalServer:
    """A tritonserver child process on free localhost ports, for tests, benchmarks and the demo.

        with LocalServer(repo) as server:
            DamoClient(server.http_url).detect("bus.jpg")
    """

    def __init__(self, repo, log_path=None, model: str = "damo_yolo", ready_timeout: float = 180.0,
                 extra_args: tuple = (), env: Optional[dict] = None):
        self.repo, self.model, self.ready_timeout = Path(repo), model, ready_timeout
        self.env = {**os.environ, **(env or {})}  # the server's environment: this one, with ``env`` on top
        self.log_path = Path(log_path) if log_path else self.repo.parent / "tritonserver.log"
        self.extra_args = list(extra_args)
        self.http_port, self.grpc_port, self.metrics_port = self._chosen = tuple(free_ports(3))
        self.proc: Optional[subprocess.Popen] = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.is_file() else ""

    def start(self) -> "LocalServer":
        """Start the server and wait until the model is ready; RuntimeError (with the log's tail) otherwise.
        Ports this object chose that another process took meanwhile are chosen again (twice at most)."""
        for attempt in range(3):
            try:
                return self._start(append_log=attempt > 0)
            except RuntimeError:
                taken = PORT_TAKEN in self.log_tail(20000)
                if attempt == 2 or not taken or (self.http_port, self.grpc_port, self.metrics_port) != self._chosen:
                    raise
                self.http_port, self.grpc_port, self.metrics_port = self._chosen = tuple(free_ports(3))
        raise AssertionError("unreachable")

    def _start(self, append_log: bool = False) -> "LocalServer":
        import time
        import urllib.request
        args = ["--model-repository", str(self.repo), f"--http-port={self.http_port}",
                f"--grpc-port={self.grpc_port}", f"--metrics-port={self.metrics_port}", *self.extra_args]
        # DAMO_TRITONSERVER names another server binary (e.g. /opt/tritonserver/bin/tritonserver in NVIDIA's
        # container, with the GPU backends); the default is this package's launcher of the bundled server
        binary = os.environ.get("DAMO_TRITONSERVER")
        command = ([binary, *(f"{option}=127.0.0.1" for option in LOCAL_ONLY), *args] if binary
                   else [sys.executable, "-m", "damo_yolo.serving.tritonserver", *args])
        with open(self.log_path, "a" if append_log else "w") as log:  # (a retry's log follows the first's)
            proc = self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        url = f"http://{self.http_url}/v2/models/{self.model}/ready"
        deadline = time.time() + self.ready_timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    # ready, and this server answered: not another one on a port taken meanwhile
                    if answer.status == 200 and proc.poll() is None and SERVING_HTTP in self.log_tail(1 << 20):
                        return self
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"tritonserver did not get {self.model} ready within {self.ready_timeout:g} s "
                                   f"(log {self.log_path}):\n{self.log_tail()}")
            time.sleep(0.3)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


CPU_HOST_NOTE = ("tritonserver: no NVIDIA GPU on this host, so the server's CUDA and NVML messages below (pinned "
                 "memory, CudaDriverHelper, 'unable to create stream', 'Failed to initialize NVML') are expected: "
                 "the models run on the CPU")


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver with a device: what the server's CUDA and NVML calls need."""
    return Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir())


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
               add_help_option=False)  # --help and -h are the server's
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def cli(args: tuple[str, ...]) -> None:
    """Triton's own server binary with every argument passed through (`tritonserver --help`: the server's)."""
    try:
        paths = server_paths()
        backends = backend_directory(paths)
    except (ServerNotInstalled, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        cmd = server_command(list(args), backends, paths["binary"])
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if not has_nvidia_gpu() and not any(a in ("--help", "-h", "--version") for a in args):
        click.echo(CPU_HOST_NOTE, err=True)
    os.execve(cmd[0], cmd, server_environment(paths))


def main(argv: Optional[list[str]] = None) -> int:
    """The launcher with ``argv`` (default: the command line): it becomes the server process (exec), so it
    returns only when the server cannot be started (1)."""
    return run(cli, argv, "tritonserver")


if __name__ == "__main__":
    raise SystemExit(main())
