"""The serving platform, named once: the NVIDIA Triton container both images start from and the GPU target is
built for and tested against, the versions of its components (each with where it was read: NVIDIA's release
notes and NVIDIA's repositories), and NVIDIA's Triton security bulletins it is past.

A TensorRT plan only loads in the TensorRT that built it, on the GPU architecture it was built for: plans are
built with exactly ``TENSORRT`` (the `gpu` extra pins it) and served by ``CONTAINER``. The release fixes every
Triton security bulletin published (README "Security": the newest, of September 2026, is fixed from 26.07) and
is the newest with a release branch in NVIDIA's server repository. From 25.08 the containers are CUDA 13 (the
``-cu13`` TensorRT and ``cuda130`` DALI wheels); from 26.06 they run TensorRT 11 (strongly typed networks only).
TensorRT's and DALI's versions are read from the image's environment: a GPU host confirms both before any build
(tensorrt_builder.import_tensorrt and damo-export --target gpu refuse any other).
"""
from __future__ import annotations

CONTAINER = "nvcr.io/nvidia/tritonserver:26.08-py3"
TRITON_SERVER = "2.72.0"
CUDA = "13.4.1"
TENSORRT = "11.2.1.2"
DALI = "2.2.0"
PYTHON = "3.12"  # the container's Python (Ubuntu 24.04): the python backend's stub runs it, the package goes in it
MIN_COMPUTE_CAPABILITY = (7, 5)  # what this release supports (Turing and newer)
CUDA_MAJOR = int(CUDA.split(".")[0])
TENSORRT_PACKAGE = f"tensorrt-cu{CUDA_MAJOR}"  # NVIDIA's wheels name the CUDA major
TENSORRT_BINDINGS_PACKAGE = f"tensorrt-cu{CUDA_MAJOR}-bindings"  # the plain wheel with the Python API (PyPI)
DALI_PACKAGE = f"nvidia-dali-cuda{CUDA_MAJOR}0"

# where each figure was read (NVIDIA's sources)
SOURCES = {
    "TRITON_SERVER": "TRITON_VERSION of triton-inference-server/server at branch r26.08",
    "CUDA": "https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-26-08.html "
            "(\"Release 26.08 is based on CUDA 13.4.1\"; compute capability 7.5 and later)",
    "TENSORRT": "the 26.08-py3 image's environment (TENSORRT_VERSION=11.2.1.2), as published in dumps of the image; "
                "NVIDIA's release page defers to the Frameworks Support Matrix; TensorRT 11 from 26.06: "
                "triton-inference-server/server PR #8828 (\"The 26.06 TensorRT container ships TRT 11.0.0\")",
    "DALI": "the 26.08-py3 image's environment (DALI_VERSION=2.2.0), as published in dumps of the image",
    "PYTHON": "build.py of triton-inference-server/server at r26.08 (Ubuntu 24.04 base, python3 from its packages); "
              "docs/introduction/compatibility.md at r26.08 (Python 3.12.3)",
    "ONNXRUNTIME_BACKEND": "ort_version 1.28.0 in build.py's DEFAULT_TRITON_VERSION_MAP at r26.08 (matches the dumps)",
}

def release(version: str, parts: int = 3) -> tuple:
    """The first ``parts`` numbers of a version string (``10.8.0.43`` -> (10, 8, 0))."""
    return tuple(int(p) for p in str(version).split(".")[:parts] if p.isdigit())


def tensorrt_mismatch(plan_version: str, serving_version: str = TENSORRT) -> str:
    """Why a plan built with ``plan_version`` will not load where ``serving_version`` runs ('' if it will)."""
    if not plan_version or release(plan_version) == release(serving_version):
        return ""
    return (f"the plan was built with TensorRT {plan_version}, but the serving container runs TensorRT "
            f"{serving_version}: a plan only loads in the TensorRT that built it; rebuild it with "
            f"{TENSORRT_PACKAGE}=={serving_version} (damo-export --target gpu inside {CONTAINER})")


def dali_mismatch(installed: str, serving_version: str = DALI) -> str:
    """Why a model.dali written by DALI ``installed`` may not load in the serving container ('' if it will)."""
    if release(installed, 2) == release(serving_version, 2):
        return ""
    return (f"DALI {installed} is installed, but the serving container runs DALI {serving_version}: model.dali "
            f"records the operators of the DALI that writes it; export inside {CONTAINER} "
            f"(or pip install {DALI_PACKAGE}=={serving_version})")


def platform_warnings(summary: dict) -> list[str]:
    """What will keep a repository (its ``export`` summary) from loading in the serving container."""
    problem = tensorrt_mismatch(summary.get("tensorrt", "")) if summary.get("target") == "gpu" else ""
    return [problem] if problem else []
