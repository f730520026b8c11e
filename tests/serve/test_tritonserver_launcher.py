"""The `tritonserver` launcher: backends with the stub in place, library path, localhost by default."""
from __future__ import annotations

import sys

from damo_yolo.serving.tritonserver import backend_directory, server_command, server_environment, server_paths


def test_backend_directory_has_the_stub_beside_the_backend(tmp_path):
    paths = server_paths()
    backends = backend_directory(paths, cache_root=tmp_path)
    assert (backends / "python" / "libtriton_python.so").exists()
    assert (backends / "python" / "triton_python_backend_stub").stat().st_mode & 0o111
    assert backend_directory(paths, cache_root=tmp_path) == backends  # made once, then reused


def test_command_adds_only_what_is_missing(tmp_path):
    cmd = server_command(["--model-repository", "repo", "--http-address=127.0.0.2"], tmp_path, tmp_path / "bin")
    assert cmd[:3] == [str(tmp_path / "bin"), "--model-repository", "repo"]
    assert f"--backend-directory={tmp_path}" in cmd
    assert "--grpc-address=127.0.0.1" in cmd and "--metrics-address=127.0.0.1" in cmd
    assert "--http-address=127.0.0.1" not in cmd and "--http-address=127.0.0.2" in cmd


def test_the_bundled_server_serves_this_host_only(tmp_path):
    """2.51 predates NVIDIA's Triton security fixes: an address beyond loopback is refused in one line, before the
    server starts (the images serve networks)."""
    import subprocess

    import pytest
    for args in (["--http-address=0.0.0.0"], ["--grpc-address", "::"], ["--metrics-address=10.0.0.7"]):
        with pytest.raises(ValueError, match="predates NVIDIA's Triton security fixes"):
            server_command(["--model-repository", "repo", *args], tmp_path, tmp_path / "bin")
    for args in (["--http-address=127.0.0.1"], ["--grpc-address", "::1"], ["--metrics-address=localhost"]):
        server_command(["--model-repository", "repo", *args], tmp_path, tmp_path / "bin")
    run = subprocess.run([sys.executable, "-m", "damo_yolo.serving.tritonserver", "--model-repository", "repo",
                          "--http-address", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
    assert "it serves this host only, not --http-address 0.0.0.0" in run.stderr and 'README "Security"' in run.stderr


def test_environment_puts_the_wheel_libraries_and_this_python_first():
    paths = server_paths()
    env = server_environment(paths, base={"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/x"})
    libs = env["LD_LIBRARY_PATH"].split(":")
    assert libs[0] == str(paths["libs"]) and libs[-1] == "/opt/x"
    assert env["PATH"].startswith(str(__import__("pathlib").Path(sys.executable).parent))


def test_free_ports_are_distinct_and_bindable():
    import socket

    from damo_yolo.serving.tritonserver import free_ports
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def _version(command) -> str:
    import subprocess
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # nothing of ours on the library path
    run = subprocess.run([str(command), "--version"], capture_output=True, text=True, env=env)
    return run.stdout + run.stderr  # perf_analyzer prints its version on stderr


def test_the_environments_perf_analyzer_runs_as_installed():
    from pathlib import Path
    command = Path(sys.executable).parent / "perf_analyzer"  # what scripts/setup.sh leaves
    assert "Perf Analyzer Version 2.51" in _version(command)


def test_launcher_wraps_the_wheels_binary_once(tmp_path):
    import shutil
    from pathlib import Path

    from damo_client.perf import install_launcher
    bindir = tmp_path / "bin"
    bindir.mkdir()
    real = Path(sys.executable).parent / "perf_analyzer"
    real = real.with_name("perf_analyzer.bin") if real.with_name("perf_analyzer.bin").exists() else real
    shutil.copy2(real, bindir / "perf_analyzer")  # as the tritonclient wheel installs it
    assert "Perf Analyzer Version" not in _version(bindir / "perf_analyzer")  # libb64/libcudart missing
    launcher = install_launcher(bindir)
    assert launcher == bindir / "perf_analyzer" and (bindir / "perf_analyzer.bin").read_bytes()[:4] == b"\x7fELF"
    assert "Perf Analyzer Version 2.51" in _version(launcher)
    assert install_launcher(bindir) == launcher and "Perf Analyzer Version 2.51" in _version(launcher)
    assert (sorted(p.name for p in (tmp_path / "lib" / "damo-perf-libs").iterdir())
            == ["libb64.so.0d", "libcudart.so.12"])


def test_cpu_hosts_are_told_the_gpu_messages_are_expected(tmp_path):
    import subprocess

    from damo_yolo.serving.tritonserver import CPU_HOST_NOTE, has_nvidia_gpu
    if has_nvidia_gpu():
        import pytest
        pytest.skip("this host has an NVIDIA GPU: the note is not printed")
    run = subprocess.run([sys.executable, "-m", "damo_yolo.serving.tritonserver", "--model-repository",
                          str(tmp_path / "none"), "--exit-on-error=true", "--http-port=0", "--grpc-port=0",
                          "--metrics-port=0"], capture_output=True, text=True, timeout=120)
    assert run.stderr.startswith(CPU_HOST_NOTE)
    assert "NVML" in run.stdout + run.stderr or "CUDA" in run.stdout + run.stderr  # what the note explains


def test_a_local_server_whose_port_was_taken_meanwhile_chooses_again(tmp_path):
    """Ports chosen free can be bound by another process before the server binds them: the server says so and
    exits, and LocalServer starts it again on other ports (where the ports were given, it does not)."""
    import socket
    from pathlib import Path

    import pytest

    from damo_yolo.serving.tritonserver import LocalServer
    repo = Path(__file__).resolve().parents[2] / "triton_models"
    log = tmp_path / "server.log"
    server = LocalServer(repo, log)
    chosen = (server.http_port, server.grpc_port, server.metrics_port)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", server.grpc_port))
        squatter.listen()
        with server:
            assert (server.http_port, server.grpc_port, server.metrics_port) != chosen
            assert "already in use" in log.read_text()
            given = LocalServer(repo, tmp_path / "given.log", ready_timeout=60)
            given.http_port, given.grpc_port = server.http_port, server.grpc_port  # both in use by `server`
            with pytest.raises(RuntimeError, match="already in use"):
                given.start()
