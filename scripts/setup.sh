#!/usr/bin/env bash
# Set up this checkout on a bare Debian 12 machine with Python 3.11: the system packages it lacks (see
# README "Setup in detail"), then a virtual environment in .venv holding the project (editable) and the
# extras given in DAMO_EXTRAS (default: all = train, export, server, test). Idempotent: a second run
# only checks and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
EXTRAS=${DAMO_EXTRAS:-all}
say() { printf '[setup] %s\n' "$*"; }

# --- system packages (only what is missing) ---------------------------------------------------------
missing=()
command -v "$PY" >/dev/null 2>&1 || missing+=(python3)
if command -v "$PY" >/dev/null 2>&1; then
    "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
        || { say "warning: $("$PY" -V 2>&1) found; the project is checked on Python 3.11 (PYTHON=... picks another)"; }
    # Debian splits venv/ensurepip out of python3
    "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
    # Triton's python-backend stub links libpython3.11.so.1.0
    libdir=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
    if [ ! -e "$libdir/libpython3.11.so.1.0" ] && ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libpython3.11.so.1.0'; then
        missing+=(libpython3.11)
    fi
fi
# Prometheus and promtool (Debian's prometheus package): the tests evaluate deploy/monitoring's queries and
# alert rules in a real Prometheus
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# HAProxy (Debian's package): the entrypoint serves through it (damo_yolo/serving/supervisor.py)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
# dnsmasq (Debian's dnsmasq-base, no service): the DNS server the rollout test's clients resolve pods through
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing system packages: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        say "error: missing system packages: ${missing[*]} (install them with apt-get as root, then rerun)" >&2
        exit 1
    fi
fi

# --- virtual environment ------------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $("$PY" -V 2>&1)"
    "$PY" -m venv .venv
fi
stamp=".venv/.damo-installed"
want="$(cat setup.py pyproject.toml | sha256sum | cut -c1-16) $EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing damo-yolo[$EXTRAS] into .venv (2-3 minutes on a fresh machine)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    echo "$want" > "$stamp"
fi
# perf_analyzer (tritonclient wheel) links libb64/libcudart, which the nvidia-pytriton wheel holds: wrap it once
if [ -f .venv/bin/perf_analyzer ] && head -c 4 .venv/bin/perf_analyzer | grep -q ELF \
        && .venv/bin/python -c 'import pytriton' 2>/dev/null; then
    .venv/bin/python -m damo_client.perf --install-launcher >/dev/null
fi
say "ready: $(.venv/bin/python -c 'import damo_yolo; print("damo_yolo", damo_yolo.__version__)') in $(pwd)/.venv"
