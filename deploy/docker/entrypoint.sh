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
#   LISTEN_ADDRESS     where the three endpoints listen [0.0.0.0: the container's network is the boundary]
#   ADMIN_KEY          the shared secret that opens Triton's admin APIs (ADMIN_APIS) on HTTP and gRPC, sent by the
#                      operator as the header ADMIN_HEADER; at least 16 characters of [A-Za-z0-9._~+/-]
#                      [unset: a random key nobody is told, so the admin APIs stay closed]
#   ADMIN_HEADER       the header (HTTP) / metadata key (gRPC) that carries ADMIN_KEY [admin-key]; gRPC clients send it as
#                      triton-grpc-protocol-<ADMIN_HEADER> (Triton prefixes restricted gRPC metadata keys)
#   ADMIN_APIS         Triton's restricted-API categories [model-repository,shared-memory,logging,trace]: repository
#                      control, system and CUDA shared-memory registration, log and trace settings. Inference,
#                      health, metadata, model configuration and statistics stay open (clients and perf_analyzer)
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

# the admin APIs behind a header (Triton's restricted APIs; docs/customization_guide/deploy.md of the server)
header="${ADMIN_HEADER:-admin-key}"
apis="${ADMIN_APIS:-model-repository,shared-memory,logging,trace}"
if [[ ! "$header" =~ ^[a-z0-9][a-z0-9-]*$ ]]; then
    echo "entrypoint: ADMIN_HEADER must be a lower-case header name ([a-z0-9-]), got '$header'" >&2
    exit 2
fi
if [[ ! "$apis" =~ ^[a-z-]+(,[a-z-]+)*$ ]]; then
    echo "entrypoint: ADMIN_APIS must be Triton API categories separated by commas, got '$apis'" >&2
    exit 2
fi
if [[ -z "${ADMIN_KEY:-}" ]]; then
    key="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"  # closed: nobody holds this key
    echo "entrypoint: admin APIs ($apis) closed (no ADMIN_KEY); inference, health and metadata are open" >&2
elif [[ ${#ADMIN_KEY} -lt 16 || ! "$ADMIN_KEY" =~ ^[A-Za-z0-9._~+/-]+$ ]]; then
    echo "entrypoint: ADMIN_KEY must be at least 16 characters of [A-Za-z0-9._~+/-]" \
         "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')" >&2
    exit 2
else
    key="$ADMIN_KEY"
    echo "entrypoint: admin APIs ($apis) need the header $header" >&2
fi
unset ADMIN_KEY  # the models' processes do not inherit it

# strict readiness: ready only when every model is; summary latencies: the p50/p99 series
# (nv_inference_request_summary_us) the dashboard and alerts read; no model control, SageMaker or Vertex AI
# front ends (Triton's secure-deployment guide).
# HTTP and gRPC reach Triton through HAProxy (damo_yolo/serving/supervisor.py), which drains at SIGTERM: new
# connections refused, open ones told to go (Connection: close, GOAWAY) within 15 s, in-flight requests answered;
# then Triton stops with no client connected and its 15 s exit timeout for the unload alone. Metrics stay Triton's.
address="${LISTEN_ADDRESS:-0.0.0.0}"
exec python3 -m damo_yolo.serving.supervisor --address="$address" --drain=15 \
    --http-port="${HTTP_PORT:-8000}" --grpc-port="${GRPC_PORT:-8001}" -- \
    "${TRITONSERVER:-tritonserver}" \
    --model-repository="$repo" \
    --http-restricted-api="$apis:$header=$key" --grpc-restricted-protocol="$apis:$header=$key" \
    --model-control-mode=none --allow-sagemaker=false --allow-vertex-ai=false \
    --metrics-address="$address" --metrics-port="${METRICS_PORT:-8002}" \
    --allow-metrics=true --metrics-config=summary_latencies=true \
    --strict-readiness=true --exit-on-error=true --exit-timeout-secs=15 \
    "$@"
