#!/usr/bin/env bash
# Set up (idempotent) and run the demo: every DAMO-YOLO variant built and checked, one run on a photograph.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
image=$(ls ../shared/data/images/*.jpg 2>/dev/null | head -n 1 || true)
.venv/bin/damo-zoo ${image:+--image "$image"}
