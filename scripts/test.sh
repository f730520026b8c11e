#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite; extra arguments go to pytest.
# A run that collects no test fails, unless the arguments selected nothing on purpose.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
    if [ $# -gt 0 ]; then
        echo "[test] no test matched the selection: $*"
        exit 0
    fi
    echo "[test] error: pytest collected no test at all" >&2
    exit 1
fi
exit $rc
