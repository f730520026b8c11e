#!/usr/bin/env bash
# Inside NVIDIA's Triton container: the python3 that pip installs the project into must be the Python the python
# backend's stub links (its libpython), or the models import nothing of it. One line and exit 1 when they differ.
set -euo pipefail
stub="${1:-/opt/tritonserver/backends/python/triton_python_backend_stub}"
[ -x "$stub" ] || { echo "check_python_backend: no python backend stub at $stub" >&2; exit 1; }
linked=$(ldd "$stub" | sed -n 's/.*libpython\([0-9]*\.[0-9]*\)\.so.*/\1/p' | head -n 1)
have=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ -z "$linked" ]; then
    echo "check_python_backend: $stub links no libpython (ldd found none)" >&2; exit 1
fi
if [ "$linked" != "$have" ]; then
    echo "check_python_backend: the python backend's stub runs Python $linked, but python3 is $have:" \
         "install the project with python$linked" >&2
    exit 1
fi
echo "check_python_backend: python3 $have is the python backend's Python"
