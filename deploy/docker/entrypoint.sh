#!/usr/bin/env bash
# Serve a DAMO-YOLO model repository with tritonserver: the entrypoint of both images (CI runs this script
# directly against the bundled server: tests/deployment/test_entrypoint_metrics.py).
#
# Environment (all optional):
#   MODEL_REPOSITORY   a folder, or one of Triton's cloud repository paths (s3://bucket/path, gs://..., as://...;
#                      credentials from the usual AWS_* / GOOGLE_APPLICATION_CREDENTIALS / AZURE_* variables)
#                      [/models]
#   SCORE_THRESHOLD    served default score threshold for requests that set none [the repository's]
#   IOU_THRESHOLD      served default NMS IoU (CPU target) [the repository's]
#                      (a local repository only: applied to a copy, the mounted one is left alone)
#   HTTP_PORT GRPC_PORT METRICS_PORT   [8000 8001 8002]
#   TRITONSERVER       the server [tritonserver on PATH: the bundled launcher in the CPU image, NVIDIA's in the GPU one]
# Arguments are passed on to tritonserver (e.g. --log-verbose=1).
set -euo pipefail

repo="${MODEL_REPOSITORY:-/models}"
if [[ -n "${SCORE_THRESHOLD:-}${IOU_THRESHOLD:-}" ]]; then
    if [[ "$repo" == *://* ]]; then
        echo "entrypoint: SCORE_THRESHOLD / IOU_THRESHOLD need a local repository, not $repo:" \
             "export it with damo-export --score-threshold / --iou-threshold instead" >&2
        exit 2
    fi
    copy="$(mktemp -d)/models"
    python3 -m damo_yolo.serving.repository "$repo" --out "$copy" \
        ${SCORE_THRESHOLD:+--score-threshold "$SCORE_THRESHOLD"} ${IOU_THRESHOLD:+--iou-threshold "$IOU_THRESHOLD"}
    repo="$copy"
elif [[ "$repo" != *://* ]]; then
    python3 -m damo_yolo.serving.repository "$repo"  # says what it serves; stops on a broken repository
fi

# every address: the container's network is the boundary; strict readiness: ready only when every model is;
# summary latencies: the p50/p99 series (nv_inference_request_summary_us) the dashboard and alerts read
exec "${TRITONSERVER:-tritonserver}" \
    --model-repository="$repo" \
    --http-address=0.0.0.0 --grpc-address=0.0.0.0 --metrics-address=0.0.0.0 \
    --http-port="${HTTP_PORT:-8000}" --grpc-port="${GRPC_PORT:-8001}" --metrics-port="${METRICS_PORT:-8002}" \
    --allow-metrics=true --metrics-config=summary_latencies=true \
    --strict-readiness=true --exit-on-error=true --exit-timeout-secs=30 \
    "$@"
