#!/usr/bin/env bash
# GPU smoke test, on a host with an NVIDIA GPU, docker and the NVIDIA container toolkit:
#   bash scripts/gpu_smoke.sh CHECKPOINT
# Runs the serving container (damo_yolo/serving/platform.py), installs the project with the pinned TensorRT and
# DALI, exports FP16 plans of CHECKPOINT (Ns, or any variant) and of the official-layout T, serves them with
# the container's tritonserver, and prints served-vs-onnxruntime agreement on the shared photographs,
# perf_analyzer p50/p99 and throughput at concurrency 1 and 8, and pass/fail (tests/gpu/test_gpu_smoke.py).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] && [ -f "$1" ] || { echo "usage: bash scripts/gpu_smoke.sh CHECKPOINT" >&2; exit 2; }
checkpoint=$(realpath "$1")
shared=$(realpath "${DAMO_SHARED_DIR:-../shared}")
image=$(sed -n 's/^CONTAINER = "\(.*\)"/\1/p' damo_yolo/serving/platform.py)
command -v docker >/dev/null || { echo "gpu_smoke: docker is not installed" >&2; exit 1; }
echo "[gpu_smoke] $image, checkpoint $checkpoint"
exec docker run --rm --gpus all --shm-size 2g \
    -v "$PWD:/src:ro" -v "$shared:/shared:ro" -v "$checkpoint:/checkpoint.pth:ro" \
    -e DAMO_SHARED_DIR=/shared -e DAMO_GPU_CHECKPOINT=/checkpoint.pth \
    -e DAMO_TRITONSERVER=/opt/tritonserver/bin/tritonserver \
    "$image" bash -c '
        set -e
        mkdir /work && tar -C /src --exclude=./.venv --exclude=./work_dirs --exclude=./data -cf - . | tar -C /work -xf -
        cd /work
        pip install -q --extra-index-url https://pypi.nvidia.com ".[export,gpu,test]"
        python -m pytest -m gpu tests/gpu -s -p no:cacheprovider'
