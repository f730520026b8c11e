"""The `tritonserver` launcher: backends with the stub in place, library path, localhost by default."""
from __future__ import annotations

import sys

from damo_yolo.deploy.tritonserver import backend_directory, server_command, server_environment, server_paths


def test_backend_directory_has_the_stub_beside_the_backend(tmp_path):
    paths = server_paths()
    backends = backend_directory(paths, cache_root=tmp_path)
    assert (backends / "python" / "libtriton_python.so").exists()
    assert (backends / "python" / "triton_python_backend_stub").stat().st_mode & 0o111
    assert backend_directory(paths, cache_root=tmp_path) == backends  # made once, then reused


def test_command_adds_only_what_is_missing(tmp_path):
    cmd = server_command(["--model-repository", "repo", "--http-address=0.0.0.0"], tmp_path, tmp_path / "bin")
    assert cmd[:3] == [str(tmp_path / "bin"), "--model-repository", "repo"]
    assert f"--backend-directory={tmp_path}" in cmd
    assert "--grpc-address=127.0.0.1" in cmd and "--metrics-address=127.0.0.1" in cmd
    assert "--http-address=127.0.0.1" not in cmd and "--http-address=0.0.0.0" in cmd


def test_environment_puts_the_wheel_libraries_and_this_python_first():
    paths = server_paths()
    env = server_environment(paths, base={"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/x"})
    libs = env["LD_LIBRARY_PATH"].split(":")
    assert libs[0] == str(paths["libs"]) and libs[-1] == "/opt/x"
    assert env["PATH"].startswith(str(__import__("pathlib").Path(sys.executable).parent))


def test_free_ports_are_distinct_and_bindable():
    import socket

    from damo_yolo.deploy.tritonserver import free_ports
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
