"""What this process may use, as its container's limits say — not the node's: inside a pod ``os.cpu_count()`` is
the node's CPU count, while the pod's CPU limit is a CFS quota in its cgroup (or handed in through the downward
API). Threads sized to the node under a smaller quota only get throttled.
"""
from __future__ import annotations

import math
import os
import platform
import re
from pathlib import Path
from typing import Optional

CPU_LIMIT_ENV = "DAMO_CPU_LIMIT"  # the downward API's limits.cpu (deploy/k8s: resourceFieldRef, divisor 1)
CGROUP = Path("/sys/fs/cgroup")


def _quota_cpus(cgroup: Path) -> Optional[float]:
    """CPUs allowed by the CFS quota: cgroup v2 ``cpu.max`` ("max 100000" or "200000 100000"), or v1."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def cpu_limit(cgroup: Path = CGROUP, environ=os.environ) -> int:
    """Whole CPUs this process may use: the smallest of the downward-API limit (``DAMO_CPU_LIMIT``), the
    cgroup's CFS quota (rounded up) and the CPUs it may be scheduled on; at least 1."""
    counts = [len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)]
    quota = _quota_cpus(cgroup)
    if quota is not None:
        counts.append(math.ceil(quota))
    given = environ.get(CPU_LIMIT_ENV, "").strip()
    if given:
        try:
            counts.append(math.ceil(float(given)))
        except ValueError:
            raise ValueError(f"{CPU_LIMIT_ENV}={given!r} is not a number of CPUs") from None
    return max(1, min(counts))


def cpu_flags() -> set[str]:
    """This CPU's feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        found = re.search(r"^flags\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return set()
    return set(found.group(1).split()) if found else set()


INT8_DOT_PRODUCT = ("avx512_vnni", "avx_vnni", "amx_int8")  # u8 x s8 products summed in 32 bits, no saturation


def has_int8_dot_product(flags: Optional[set[str]] = None) -> bool:
    """Whether the CPU multiplies uint8 by int8 without saturating: an x86 CPU with VNNI or AMX, or a CPU that is
    not x86 or does not list its flags (nothing known to saturate). An x86 CPU without them sums pairs of products
    in 16 bits with AVX2's vpmaddubsw, which saturates: INT8 weights must keep to 7 bits there (reduce_range)."""
    if flags is None:
        if platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
            return True
        flags = cpu_flags()
    return not flags or bool(set(INT8_DOT_PRODUCT) & flags)


def cpu_isa() -> str:
    """The CPU model, its count of cores and the vector extensions the runtimes use (AVX2, AVX-512, VNNI, BF16,
    AMX): what every benchmark prints beside its figures, since they differ from one CPU to the next."""
    model, flags = platform.processor() or platform.machine(), cpu_flags()
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = found.group(1).strip() if found else model
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return f"{model}, {os.cpu_count()} cores, {' '.join(isa) or 'no AVX2'}"
