#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite; extra arguments go to pytest.
# A run that collects no test (pytest's exit 5) is reported and is not a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# the house's checks first (seconds): lint + import order, then types (configuration: pyproject.toml)
echo "[test] ruff check ."
.venv/bin/ruff check . || { echo "[test] ruff found problems (ruff check --fix . mends import order)"; exit 1; }
echo "[test] mypy"
.venv/bin/mypy || { echo "[test] mypy found type errors"; exit 1; }
.venv/bin/python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then  # pytest: no test collected (an empty selection is not a failure)
    echo "[test] no test was collected${*:+ for: $*}"
    exit 0
fi
exit $rc
