#!/usr/bin/env bash
# GPU smoke test, on a host with an NVIDIA GPU, docker and the NVIDIA container toolkit:
#   bash scripts/gpu_smoke.sh CHECKPOINT [IMAGES]
# Runs the serving container (damo_yolo/serving/platform.py), installs the project with the pinned TensorRT and
# DALI, exports plans of CHECKPOINT (FP16, and INT8 from its Q/DQ ONNX) and of the official-layout T (FP16),
# serves them with the container's tritonserver and prints, with pass/fail, how far the served detections agree
# with onnxruntime on the same graphs at the served settings, and perf_analyzer p50/p99 and throughput at
# concurrency 1 and 8 (tests/gpu/test_gpu_smoke.py). IMAGES: a folder of images the checkpoint detects objects
# in (default: the synthetic val set, for the synthetic demo checkpoint). Anything missing fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ $# -gt 2 ] || [ ! -f "$1" ] || { [ $# -eq 2 ] && [ ! -d "$2" ]; }; then
    echo "usage: bash scripts/gpu_smoke.sh CHECKPOINT [IMAGES]" >&2; exit 2
fi
checkpoint=$(realpath "$1")
images=$(realpath "${2:-$PWD}")
shared=$(realpath "${DAMO_SHARED_DIR:-../shared}")
[ -d "$shared/fixtures/official" ] || { echo "gpu_smoke: the shared fixtures are not at $shared (set DAMO_SHARED_DIR)" >&2; exit 1; }
image=$(sed -n 's/^CONTAINER = "\(.*\)"/\1/p' damo_yolo/serving/platform.py)
command -v docker >/dev/null || { echo "gpu_smoke: docker is not installed" >&2; exit 1; }
echo "[gpu_smoke] $image, checkpoint $checkpoint${2:+, images $images}"
exec docker run --rm --gpus all --shm-size 2g \
    -v "$PWD:/src:ro" -v "$shared:/shared:ro" -v "$checkpoint:/checkpoint.pth:ro" -v "$images:/images:ro" \
    -e DAMO_SHARED_DIR=/shared -e DAMO_GPU_CHECKPOINT=/checkpoint.pth -e DAMO_GPU_SMOKE=1 \
    -e DAMO_GPU_IMAGES="${2:+/images}" -e DAMO_TRITONSERVER=/opt/tritonserver/bin/tritonserver \
    -e PIP_BREAK_SYSTEM_PACKAGES=1 \
    "$image" bash -c '
        set -e
        mkdir /work && tar -C /src --exclude=./.venv --exclude=./work_dirs --exclude=./data -cf - . | tar -C /work -xf -
        cd /work
        python3 -m pip install -q --extra-index-url https://pypi.nvidia.com ".[export,gpu,test]"
        python3 -m pytest -m gpu tests/gpu -s -p no:cacheprovider'
