#!/usr/bin/env bash
# GPU smoke test from a fresh clone, on a host with an NVIDIA GPU, its driver, Docker and the NVIDIA Container
# Toolkit (nothing else):
#   bash scripts/gpu_smoke.sh [--decode auto|cuda|cpu] [CHECKPOINT [IMAGES]]
# Runs the serving container (CONTAINER of damo_yolo/serving/platform.py), installs the project in its python3
# (torch as the CPU build), exports plans of CHECKPOINT (default: the clone's demo checkpoint; FP16, and INT8 from
# its Q/DQ ONNX) and of DAMO-YOLO-T with weights drawn from a fixed seed (FP16, for latency), serves them with the
# container's tritonserver and prints, with pass/fail, how far the served detections agree with onnxruntime on
# the same graphs at the served settings and which decoder served, and perf_analyzer p50/p99 and throughput at
# concurrency 1 and 8 (tests/gpu/test_gpu_smoke.py). IMAGES: a folder of .jpg/.jpeg/.png images the checkpoint
# detects objects in (default: synthetic shapes on procedural backgrounds, made in the container, on which the
# demo checkpoint detects). --decode (or DAMO_GPU_DECODE): where DALI decodes JPEGs (damo-export --dali-decode):
# auto = DALI's default (the GPU's hardware JPEG decoder where it has one), cuda = nvJPEG on CUDA, cpu = on the
# CPU. A missing piece stops it with one line naming it: exit 1 (2: usage).
# Inside the container the same file runs with --in-container (the steps there; not for people).
set -euo pipefail

USAGE="usage: bash scripts/gpu_smoke.sh [--decode auto|cuda|cpu] [CHECKPOINT [IMAGES]]"
STUB=${DAMO_PYTHON_STUB:-/opt/tritonserver/backends/python/triton_python_backend_stub}  # the container's
CUDART12="nvidia-cuda-runtime-cu12==12.9.79"  # libcudart.so.12, which perf_analyzer of tritonclient 2.51 links
fail() { echo "gpu_smoke: $*" >&2; exit 1; }
misuse() { echo "$USAGE ($*)" >&2; exit 2; }

in_container() {
    # the python-backend models run in the Python the stub links: the project must be installed in that one
    [ -f "$STUB" ] || fail "$STUB is not here: --in-container runs inside the serving container"
    local want have
    want=$(ldd "$STUB" 2>/dev/null | sed -n 's/.*libpython\([0-9]*\.[0-9]*\)\.so.*/\1/p;T;q') || true
    [ -n "$want" ] || fail "ldd $STUB names no libpython: cannot tell which Python the python backend runs"
    have=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
        || fail "the container has no python3"
    [ "$have" = "$want" ] || fail "the container's python3 is Python $have, but its python backend stub links" \
        "libpython$want: the project would be installed for another Python than the one serving it"
    echo "[gpu_smoke] python3 $have (the python backend's); installing the project"
    mkdir -p /work && tar -C /src --exclude=./.venv --exclude=./work_dirs --exclude=./data -cf - . | tar -C /work -xf -
    cd /work
    # perf_analyzer links libb64.so.0d: Ubuntu's package
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libb64-0d \
        >/dev/null
    # Ubuntu's setuptools (apt) cannot be uninstalled by pip: install the pinned one beside it
    python3 -m pip install -q --ignore-installed "setuptools>=77.0.3,<81"
    # the CPU build first, so the project's torch==2.13.0 is satisfied (PyPI's build pulls gigabytes of CUDA)
    python3 -m pip install -q --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
    python3 -m pip install -q --extra-index-url https://pypi.nvidia.com ".[export,gpu,test]"
    local analyzer cudart missing
    analyzer=$(command -v perf_analyzer) || fail "perf_analyzer is not installed (tritonclient's wheel brings it)"
    if grep -q 'libcudart\.so\.12 => not found' <<<"$(ldd "$analyzer")"; then  # a container of another CUDA major
        python3 -m pip install -q "$CUDART12"
        cudart=$(python3 -c 'import glob, nvidia; print(*[f for d in nvidia.__path__
                 for f in glob.glob(d + "/*/lib/libcudart.so.12")][:1])')
        [ -n "$cudart" ] || fail "$CUDART12 brought no libcudart.so.12"
        export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}${cudart%/*}"  # after the container's own
    fi
    missing=$(ldd "$analyzer" | sed -n 's/^\s*\(\S*\) => not found/\1/p' | tr '\n' ' ')
    [ -z "$missing" ] || fail "perf_analyzer still lacks ${missing% }"
    exec python3 -m pytest -m gpu tests/gpu -s -p no:cacheprovider
}

if [ "${1:-}" = "--in-container" ]; then
    in_container
fi

# --- arguments --------------------------------------------------------------------------------------------
decode=${DAMO_GPU_DECODE:-auto}
args=()
while [ $# -gt 0 ]; do
    case $1 in
        --decode) [ $# -ge 2 ] || misuse "--decode needs a value"; decode=$2; shift 2 ;;
        --decode=*) decode=${1#--decode=}; shift ;;
        -h | --help) echo "$USAGE"; exit 0 ;;
        --) shift; args+=("$@"); break ;;
        -*) misuse "unknown option $1" ;;
        *) args+=("$1"); shift ;;
    esac
done
case $decode in auto | cuda | cpu) ;; *) misuse "--decode $decode: choose auto, cuda or cpu" ;; esac
[ ${#args[@]} -le 2 ] || misuse "at most CHECKPOINT and IMAGES"

# --- what the clone holds (no docker needed) ----------------------------------------------------------------
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -f "$root/setup.py" ] && [ -f "$root/damo_yolo/serving/platform.py" ] \
    || fail "$root is not a damo-yolo clone (no setup.py or damo_yolo/serving/platform.py): run the clone's script"
checkpoint=${args[0]:-$root/demo/model/damoyolo_tinynasL18_Ns_synthetic.pth}
[ -f "$checkpoint" ] || fail "checkpoint $checkpoint is not a file"
checkpoint=$(realpath "$checkpoint")
images=${args[1]:-}
if [ -n "$images" ]; then
    [ -d "$images" ] || fail "IMAGES $images is not a folder"
    [ -n "$(find "$images" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) \
        -print -quit)" ] || fail "IMAGES $images holds no .jpg, .jpeg or .png image"
    images=$(realpath "$images")
fi
image=$(sed -n 's/^CONTAINER = "\(.*\)"/\1/p' "$root/damo_yolo/serving/platform.py")
[ -n "$image" ] || fail "damo_yolo/serving/platform.py names no CONTAINER"

# --- what the host needs: the GPU's driver, Docker, the NVIDIA Container Toolkit -----------------------------
command -v nvidia-smi >/dev/null || fail "no NVIDIA driver: nvidia-smi is not installed (install the GPU's driver)"
gpus=$(nvidia-smi -L 2>&1) || fail "nvidia-smi finds no GPU: $(head -n 1 <<<"$gpus")"
grep -q '^GPU ' <<<"$gpus" || fail "nvidia-smi lists no GPU"
command -v docker >/dev/null || fail "docker is not installed (install Docker Engine)"
runtimes=$(docker info --format '{{json .Runtimes}}' 2>/dev/null) \
    || fail "docker cannot reach its daemon: start it, or run as a user allowed to use it (docker info failed)"
case $runtimes in
    *nvidia*) ;;  # the toolkit's runtime, registered with the daemon
    *) command -v nvidia-container-cli >/dev/null || command -v nvidia-ctk >/dev/null \
        || fail "the NVIDIA Container Toolkit is not installed (docker info lists no nvidia runtime and there is" \
            "no nvidia-container-cli): docker run --gpus needs it" ;;
esac

# --- the run ------------------------------------------------------------------------------------------------
mounts=(-v "$root:/src:ro" -v "$checkpoint:/checkpoint.pth:ro")
[ -z "$images" ] || mounts+=(-v "$images:/images:ro")
echo "[gpu_smoke] $image on $(head -n 1 <<<"$gpus"); checkpoint $checkpoint;" \
    "images ${images:-synthetic, procedural backgrounds}; DALI JPEG decoding: $decode"
exec docker run --rm --gpus all --shm-size 2g "${mounts[@]}" \
    -e DAMO_GPU_CHECKPOINT=/checkpoint.pth -e DAMO_GPU_IMAGES="${images:+/images}" -e DAMO_GPU_DECODE="$decode" \
    -e DAMO_GPU_SMOKE=1 -e DAMO_TRITONSERVER=/opt/tritonserver/bin/tritonserver -e PIP_BREAK_SYSTEM_PACKAGES=1 \
    "$image" bash /src/scripts/gpu_smoke.sh --in-container
