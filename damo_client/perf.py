"""Latency and throughput of the served ensemble with Triton's perf_analyzer, fed with real encoded images.

perf_analyzer (installed by the tritonclient wheel) links libb64.so.0d and libcudart.so.12; on a bare
host they come from the nvidia-pytriton wheel (``pip install damo-yolo[server]``) and are linked into
``~/.cache/damo-yolo/perf-libs`` for perf_analyzer only.
"""
from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from damo_client.errors import DamoClientError

LIBRARIES = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}
SETUP_HINT = ("install the server extra (`pip install damo-yolo[server]`, or `bash scripts/setup.sh`), or provide "
              "them system-wide (Debian `libb64-0d`, pip `nvidia-cuda-runtime-cu12`)")


class PerfUnavailable(DamoClientError):
    """perf_analyzer or the libraries it needs are missing."""


@dataclass(frozen=True)
class PerfRow:
    concurrency: int
    throughput: float  # inferences (images) per second
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    server_queue_ms: float  # mean time requests waited in the server's queues
    server_compute_ms: float  # mean time in the models (input + infer + output)


def find_perf_analyzer() -> Path:
    found = shutil.which("perf_analyzer") or str(Path(sys.executable).parent / "perf_analyzer")
    if not Path(found).is_file():
        raise PerfUnavailable("perf_analyzer not found: it comes with `pip install tritonclient==2.51.0` "
                              "(the damo-yolo client's dependency); put its bin folder on PATH")
    return Path(found)


def _missing_system_libraries(binary: Path) -> list[str]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    return [name for name in LIBRARIES if f"{name} => not found" in out]


def library_dir(binary: Path) -> Optional[Path]:
    """A folder to put on LD_LIBRARY_PATH so perf_analyzer finds its libraries (None: it already does)."""
    missing = _missing_system_libraries(binary)
    if not missing:
        return None
    import importlib.util
    spec = importlib.util.find_spec("pytriton")
    wheel_libs = Path(spec.origin).parents[1] / "nvidia_pytriton.libs" if spec and spec.origin else None
    if wheel_libs is None or not wheel_libs.is_dir():
        raise PerfUnavailable(f"perf_analyzer needs {', '.join(missing)}: {SETUP_HINT}")
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "damo-yolo" / "perf-libs"
    folder.mkdir(parents=True, exist_ok=True)
    for name, pattern in LIBRARIES.items():
        candidates = sorted(wheel_libs.glob(pattern))
        if not candidates:
            raise PerfUnavailable(f"perf_analyzer needs {name}, which {wheel_libs} does not hold: {SETUP_HINT}")
        link = folder / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(candidates[0])
    return folder


def write_input_data(images: list[bytes], path: Path) -> Path:
    """perf_analyzer's --input-data JSON: each image as a serialized BYTES element (4-byte length + bytes)."""
    entries = [{"IMAGE": {"b64": base64.b64encode(struct.pack("<I", len(d)) + d).decode("ascii")}} for d in images]
    path.write_text(json.dumps({"data": entries}))
    return path


def parse_csv(path: Path) -> list[PerfRow]:
    """perf_analyzer's CSV (latencies in µs) → rows in ms, by concurrency."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            us = {k: float(v) / 1000 for k, v in row.items() if k not in ("Concurrency", "Inferences/Second")}
            rows.append(PerfRow(concurrency=int(row["Concurrency"]), throughput=float(row["Inferences/Second"]),
                                p50_ms=us["p50 latency"], p90_ms=us["p90 latency"], p95_ms=us["p95 latency"],
                                p99_ms=us["p99 latency"], server_queue_ms=us["Server Queue"],
                                server_compute_ms=us["Server Compute Input"] + us["Server Compute Infer"]
                                + us["Server Compute Output"]))
    return sorted(rows, key=lambda r: r.concurrency)


def run_perf_analyzer(images: list[bytes], url: str, protocol: str = "http", model: str = "damo_yolo",
                      concurrency: str = "1:4:1", batch_size: int = 1, measurement_interval_ms: int = 2000,
                      max_trials: int = 5, stability_percentage: float = 20.0, csv_path: Optional[Path] = None,
                      timeout: Optional[float] = None) -> list[PerfRow]:
    """Run perf_analyzer over a concurrency range; returns one row per concurrency level."""
    if not images:
        raise DamoClientError("perf needs at least one image")
    binary = find_perf_analyzer()
    env = dict(os.environ)
    libs = library_dir(binary)
    if libs is not None:
        env["LD_LIBRARY_PATH"] = f"{libs}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(libs)
    with tempfile.TemporaryDirectory(prefix="damo-perf-") as tmp:
        data = write_input_data(images, Path(tmp) / "input.json")
        out_csv = Path(tmp) / "perf.csv"
        cmd = [str(binary), "-m", model, "-u", url, "-i", protocol, "-b", str(batch_size),
               "--concurrency-range", concurrency, "--input-data", str(data), "--shape", "IMAGE:1",
               "--measurement-interval", str(measurement_interval_ms), "--max-trials", str(max_trials),
               "--stability-percentage", f"{stability_percentage:g}",
               "-f", str(out_csv)]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DamoClientError(f"perf_analyzer did not finish within {timeout:g} s") from exc
        if run.returncode != 0 or not out_csv.is_file():
            lines = [line for line in (run.stderr + run.stdout).splitlines() if line.strip()]
            reason = next((line for line in lines if "error" in line.lower() or "failed" in line.lower()),
                          lines[-1] if lines else f"exit code {run.returncode}")
            raise DamoClientError(f"perf_analyzer failed: {reason.strip()}")
        if csv_path is not None:
            Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out_csv, csv_path)
        return parse_csv(out_csv)


def format_rows(rows: list[PerfRow]) -> str:
    lines = ["concurrency  infer/s   p50 ms   p90 ms   p99 ms  queue ms  compute ms"]
    lines += [f"{r.concurrency:>11}  {r.throughput:>7.1f}  {r.p50_ms:>7.1f}  {r.p90_ms:>7.1f}  {r.p99_ms:>7.1f}"
              f"  {r.server_queue_ms:>8.2f}  {r.server_compute_ms:>10.1f}" for r in rows]
    return "\n".join(lines)


def plot_rows(rows: list[PerfRow], path: Path, title: str = "damo_yolo served on Triton") -> Path:
    """Throughput and latency percentiles against concurrency (needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise DamoClientError("--plot needs matplotlib (pip install matplotlib)") from exc
    conc = [r.concurrency for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(conc, [r.throughput for r in rows], marker="o")
    left.set(xlabel="concurrency", ylabel="images / s", title="throughput")
    for label, key in (("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms")):
        right.plot(conc, [getattr(r, key) for r in rows], marker="o", label=label)
    right.set(xlabel="concurrency", ylabel="latency (ms)", title="latency")
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
