"""Every TensorRT name the builder uses exists in the pinned TensorRT's real Python API.

TensorRT cannot be imported without a GPU, but its bindings wheel (tensorrt-cu13-bindings for the CUDA 13
container, a plain wheel from PyPI) holds the pybind11 module, which keeps every Python-visible class,
method, property and enum member name as a string. The names the builder reaches through ``trt`` (and
through the objects TensorRT hands back, and the methods of any TensorRT class it derives from) are read
from its source and looked up there. A TensorRT bump that drops an API the builder calls fails here; the
same check shows that TensorRT 11 lacks the implicit calibration 10.x had. Networks are strongly typed
(TensorRT 11 has no FP16/INT8 builder flags): precision comes from the graph.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from damo_yolo.serving import platform, tensorrt_builder

CACHE = Path.home() / ".cache" / "damo-yolo" / "tensorrt-bindings"


def bindings_names(version: str, package: str = platform.TENSORRT_BINDINGS_PACKAGE) -> set[str]:
    """Identifiers in tensorrt.so of ``package``==version (downloaded once, then cached)."""
    so = CACHE / package / version / "tensorrt.so"
    if not so.is_file():
        wheels = CACHE / package / version / "wheel"
        run = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                              "--disable-pip-version-check", "-q", "-d", str(wheels),
                              f"{package}=={version}"], capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            pytest.fail(f"cannot download {package}=={version}: {run.stderr.strip()[-500:]}")
        (wheel,) = wheels.glob("*.whl")
        with zipfile.ZipFile(wheel) as zf:
            member = next(n for n in zf.namelist() if n.endswith("/tensorrt.so"))
            so.write_bytes(zf.read(member))
    return {m.decode() for m in re.findall(rb"[A-Za-z_][A-Za-z0-9_]+", so.read_bytes())}


def _root(node: ast.AST) -> str:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


def tensorrt_names_used(source: str) -> set[str]:
    """Attribute names reached from ``trt`` or from values TensorRT returned, and the methods of classes
    derived from a TensorRT class (they override its API)."""
    tree = ast.parse(source)
    trt_values, names = {"trt"}, set()
    for node in ast.walk(tree):  # variables holding TensorRT objects (builder, network, config, ...)
        if isinstance(node, ast.Assign) and _root(node.value) in trt_values:
            trt_values |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _root(node.value) in trt_values:
            names.add(node.attr)
        if isinstance(node, ast.ClassDef) and any(_root(base) == "trt" for base in node.bases):
            names |= {f.name for f in node.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("__")}
    return names


def _builder_usage() -> set[str]:
    used = tensorrt_names_used(Path(tensorrt_builder.__file__).read_text())
    # the check reads what it should: the core of the build is among the names found
    assert {"Builder", "create_network", "OnnxParser", "build_serialized_network", "NetworkDefinitionCreationFlag",
            "STRONGLY_TYPED", "set_memory_pool_limit", "create_optimization_profile"} <= used, used
    return used


def test_networks_are_strongly_typed_with_no_precision_flag():
    """TensorRT 11 builds strongly typed networks only and drops the FP16/INT8 builder flags — a check the name
    lookup cannot make, since FP16 and INT8 stay names there (data types)."""
    used = _builder_usage()
    assert not used & {"set_flag", "BuilderFlag", "FP16", "INT8", "EXPLICIT_BATCH", "platform_has_fast_fp16"}


IMPLICIT_CALIBRATION = {"IInt8EntropyCalibrator2", "IInt8Calibrator", "IInt8MinMaxCalibrator", "int8_calibrator",
                        "set_calibration_profile", "get_batch", "read_calibration_cache"}


def test_int8_uses_no_implicit_calibration_api():
    assert not _builder_usage() & IMPLICIT_CALIBRATION


def test_every_tensorrt_name_the_builder_uses_exists_in_the_pinned_version():
    missing = sorted(_builder_usage() - bindings_names(platform.TENSORRT))
    assert missing == [], f"not in TensorRT {platform.TENSORRT}'s Python API: {missing}"


def test_the_check_catches_an_api_the_pinned_version_lacks():
    """TensorRT 11 dropped the implicit INT8 calibration builders of 10.x used: the check names it against the
    pinned version, and the same code passes against TensorRT 10.13."""
    implicit = ("def build(trt, calibrator, profile):\n    config = trt.Builder(1).create_builder_config()\n"
                "    config.int8_calibrator = calibrator\n    config.set_calibration_profile(profile)\n")
    missing = tensorrt_names_used(implicit) - bindings_names(platform.TENSORRT)
    assert missing == {"int8_calibrator", "set_calibration_profile"}, sorted(missing)
    assert not tensorrt_names_used(implicit) - bindings_names("10.13.3.9")


def test_usage_reader_follows_values_and_overrides():
    source = ("def f(trt):\n    b = trt.Builder(1)\n    n = b.create_network(0)\n    n.add_input('x')\n"
              "    other.not_trt()\nclass C(trt.IInt8Calibrator):\n    def get_batch(self): pass\n")
    assert tensorrt_names_used(source) == {"Builder", "create_network", "add_input", "IInt8Calibrator",
                                           "get_batch"}
