#!/usr/bin/env bash
# Set up this machine (idempotent), serve triton_models/ with the bundled tritonserver, and call it with
# `damo-client detect`: labelled images and COCO-style JSON land in demo_output/.
# The default model detects the eight shapes of the project's synthetic data set (see README "Demo").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/damo-demo "$@"
