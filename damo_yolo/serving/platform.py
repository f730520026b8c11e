"""The GPU serving platform, named once: the NVIDIA Triton container the GPU target is built for and tested
against, and the versions of its components (from that release's notes, docs/introduction/release_notes.md
of triton-inference-server/server at r25.01, and the DALI_VERSION of dali_backend at r25.01).

A TensorRT plan only loads in the TensorRT that built it, on the GPU architecture it was built for: plans are
built with exactly ``TENSORRT`` (the `gpu` extra pins it) and served by ``CONTAINER``. 25.01 is the newest
release whose own notes state its TensorRT and DALI versions (later release pages leave that list empty).
"""
from __future__ import annotations

CONTAINER = "nvcr.io/nvidia/tritonserver:25.01-py3"
TRITON_SERVER = "2.54.0"
CUDA = "12.8.0.038"
TENSORRT = "10.8.0.43"
DALI = "1.45.0"
PYTHON = "3.12"  # the container's Python: the python-backend models run in it
MIN_COMPUTE_CAPABILITY = (7, 5)  # what TensorRT 10.8 and this release support (Turing and newer)


def release(version: str, parts: int = 3) -> tuple:
    """The first ``parts`` numbers of a version string (``10.8.0.43`` -> (10, 8, 0))."""
    return tuple(int(p) for p in str(version).split(".")[:parts] if p.isdigit())


def tensorrt_mismatch(plan_version: str, serving_version: str = TENSORRT) -> str:
    """Why a plan built with ``plan_version`` will not load where ``serving_version`` runs ('' if it will)."""
    if not plan_version or release(plan_version) == release(serving_version):
        return ""
    return (f"the plan was built with TensorRT {plan_version}, but the serving container runs TensorRT "
            f"{serving_version}: a plan only loads in the TensorRT that built it; rebuild it with "
            f"tensorrt-cu12=={serving_version} (damo-export --target gpu inside {CONTAINER})")


def dali_mismatch(installed: str, serving_version: str = DALI) -> str:
    """Why a model.dali written by DALI ``installed`` may not load in the serving container ('' if it will)."""
    if release(installed, 2) == release(serving_version, 2):
        return ""
    return (f"DALI {installed} is installed, but the serving container runs DALI {serving_version}: model.dali "
            f"records the operators of the DALI that writes it; export inside {CONTAINER} "
            f"(or pip install nvidia-dali-cuda120=={serving_version})")


def platform_warnings(summary: dict) -> list[str]:
    """What will keep a repository (its ``export`` summary) from loading in the serving container."""
    problem = tensorrt_mismatch(summary.get("tensorrt", "")) if summary.get("target") == "gpu" else ""
    return [problem] if problem else []
