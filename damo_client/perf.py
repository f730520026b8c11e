"""Latency and throughput of the served model with Triton's perf_analyzer, fed with real encoded images.

perf_analyzer (installed by the tritonclient wheel) links libb64.so.0d and libcudart.so.12; on a bare
host they come from the nvidia-pytriton wheel (``pip install damo-yolo[server]``). ``install_launcher``
(run by scripts/setup.sh: ``python -m damo_client.perf --install-launcher``) makes the environment's own
``perf_analyzer`` command find them: the binary moves to ``perf_analyzer.bin`` and ``perf_analyzer``
becomes a two-line launcher that puts a folder of links to those libraries on LD_LIBRARY_PATH.
"""
from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Iterator, Optional, TextIO

from damo_client.errors import DamoClientError
from damo_yolo import contract as C

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
    stable: bool = True  # False: perf_analyzer found no stable window; the figures are its last trial's
    mean_ms: float = float("nan")  # mean latency (the only latency of an unstable level)
    error: str = ""  # why perf_analyzer measured nothing at this level (no figures then); "" when it did

    @property
    def failed(self) -> bool:
        return bool(self.error)


NAN = float("nan")
_PASS = re.compile(r"Pass \[\d+\] throughput: ([\d.]+) infer/sec\. Avg latency: (\d+) usec")
UNSTABLE = "Failed to obtain stable measurement"
_THREAD_ERROR = re.compile(r"Thread \[\d+\] had error: (.+)")
# what perf_analyzer 2.51 says when a window closed with no answer in it, or with no request reaching the model
_EMPTY_WINDOW = ("No valid requests recorded within time interval", "failed to find the requested model version")


def concurrency_levels(spec: str) -> list[int]:
    """perf_analyzer's START[:END[:STEP]] as the list of levels it covers."""
    parts = [int(p) for p in spec.split(":")]
    start, end, step = parts[0], parts[1] if len(parts) > 1 else parts[0], parts[2] if len(parts) > 2 else 1
    if start < 1 or end < start or step < 1:
        raise DamoClientError(f"concurrency range {spec!r}: expected 1 <= START <= END and STEP >= 1")
    return list(range(start, end + 1, step))


def unstable_row(concurrency: int, output: str) -> PerfRow:
    """The last trial perf_analyzer printed (-v) for a level it could not stabilise."""
    passes = _PASS.findall(output)
    throughput, mean_us = (float(passes[-1][0]), float(passes[-1][1])) if passes else (NAN, NAN)
    return PerfRow(concurrency, throughput, NAN, NAN, NAN, NAN, NAN, NAN, stable=False, mean_ms=mean_us / 1000)


def failed_row(concurrency: int, error: str) -> PerfRow:
    return PerfRow(concurrency, NAN, NAN, NAN, NAN, NAN, NAN, NAN, stable=False, error=error)


def failure_reason(output: str, returncode: int, measurement_interval_ms: int) -> str:
    """Why a perf_analyzer run (its -v output) measured nothing, in one line naming the option to change."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    refused = next((m.group(1) for m in map(_THREAD_ERROR.search, lines) if m), None)
    if refused is not None:
        return f"the server answered with an error: {refused}"
    if any(pattern in output for pattern in _EMPTY_WINDOW):
        return (f"no answer within a {measurement_interval_ms} ms measurement window (answers come further apart "
                f"at this concurrency): raise --measurement-interval")
    reason = next((line for line in lines if ("error" in line.lower() or "failed" in line.lower())
                   and UNSTABLE not in line), lines[-1] if lines else "")
    return f"perf_analyzer: {reason} (exit code {returncode})" if reason else f"perf_analyzer exit code {returncode}"


def level_time_limit(measurement_interval_ms: int, max_trials: int, timeout: float) -> float:
    """Seconds a level's perf_analyzer may run: its longest measurement (``max_trials`` windows, each of which
    perf_analyzer sleeps 1.2 × the interval) plus ``timeout`` for start-up and the answers still in flight
    when it stops (at a concurrency the server cannot keep up with, about one request's latency)."""
    return max_trials * 1.2 * measurement_interval_ms / 1000 + timeout


def find_perf_analyzer() -> Path:
    found = shutil.which("perf_analyzer") or str(Path(sys.executable).parent / "perf_analyzer")
    if not Path(found).is_file():
        raise PerfUnavailable("perf_analyzer not found: it comes with `pip install tritonclient==2.51.0` "
                              "(the damo-yolo client's dependency); put its bin folder on PATH")
    return Path(found)


def _missing_system_libraries(binary: Path) -> list[str]:
    with open(binary, "rb") as f:
        if f.read(4) != b"\x7fELF":  # the launcher script: it brings its libraries itself
            return []
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    return [name for name in LIBRARIES if f"{name} => not found" in out]


def library_dir(binary: Path, folder: Optional[Path] = None) -> Optional[Path]:
    """A folder to put on LD_LIBRARY_PATH so perf_analyzer finds its libraries (None: it already does);
    ``folder`` (default ~/.cache/damo-yolo/perf-libs) receives links to the nvidia-pytriton wheel's copies."""
    missing = _missing_system_libraries(binary)
    if not missing:
        return None
    import importlib.util
    spec = importlib.util.find_spec("pytriton")
    wheel_libs = Path(spec.origin).parents[1] / "nvidia_pytriton.libs" if spec and spec.origin else None
    if wheel_libs is None or not wheel_libs.is_dir():
        raise PerfUnavailable(f"perf_analyzer needs {', '.join(missing)}: {SETUP_HINT}")
    folder = folder or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "damo-yolo" / "perf-libs"
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


LAUNCHER = """#!/bin/sh
# Written by damo-yolo (python -m damo_client.perf --install-launcher): the tritonclient wheel's perf_analyzer
# (perf_analyzer.bin beside this file) with the libraries it links that a bare host lacks (libb64, libcudart),
# taken from the nvidia-pytriton wheel through links in {libs}.
LD_LIBRARY_PATH="{libs}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" exec "$(dirname "$0")/perf_analyzer.bin" "$@"
"""


def install_launcher(bindir: Optional[Path] = None) -> Optional[Path]:
    """Make ``bindir/perf_analyzer`` (default: this interpreter's bin folder) run as installed; returns the
    launcher, or None when the binary finds its libraries by itself. Idempotent: after a reinstall of
    tritonclient (which puts the binary back) it wraps the new binary."""
    bindir = Path(bindir or Path(sys.executable).parent)
    command, real = bindir / "perf_analyzer", bindir / "perf_analyzer.bin"
    if not command.is_file():
        raise PerfUnavailable(f"{command} not found: install tritonclient==2.51.0 first")
    with open(command, "rb") as f:
        is_binary = f.read(4) == b"\x7fELF"
    binary = command if is_binary else real
    libs = library_dir(binary, bindir.parent / "lib" / "damo-perf-libs")
    if libs is None:
        return None
    if is_binary:
        os.replace(command, real)
    tmp = command.with_name(".perf_analyzer.tmp")
    tmp.write_text(LAUNCHER.format(libs=libs))
    tmp.chmod(0o755)
    os.replace(tmp, command)
    return command


def write_input_data(images: list, path: Path, datatype: str = "BYTES") -> Path:
    """perf_analyzer's --input-data JSON: each image as a serialized BYTES element (4-byte length + bytes), or,
    for a UINT8 input (Triton's DALI backend), the file's bytes with their shape; decoded BGR arrays (numpy
    uint8 [H, W, 3]) as the CPU target's PIXELS input."""
    if not isinstance(images[0], (bytes, bytearray)):  # decoded frames
        entries = [{C.PIXELS.name: {"b64": base64.b64encode(a.tobytes()).decode("ascii"), "shape": list(a.shape)}}
                   for a in images]
    elif datatype == C.IMAGE_ENCODED.datatype:
        entries = [{C.IMAGE.name: {"b64": base64.b64encode(d).decode("ascii"), "shape": [len(d)]}} for d in images]
    else:
        entries = [{C.IMAGE.name: {"b64": base64.b64encode(struct.pack("<I", len(d)) + d).decode("ascii")}}
                   for d in images]
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


def sweep(images: list, url: str, protocol: str = "http", model: str = "damo_yolo",
          concurrency: str = "1:4:1", batch_size: int = 1, measurement_interval_ms: int = 2000, max_trials: int = 5,
          stability_percentage: float = 20.0, timeout: Optional[float] = None,
          datatype: Optional[str] = None) -> Iterator[PerfRow]:
    """perf_analyzer at each level of a concurrency range, one run per level; yields each level's row as soon
    as it is measured.

    A level perf_analyzer cannot stabilise (it would then end its own sweep) is still reported
    (``stable=False``, with its last trial's throughput and mean latency), and so is a level where it measured
    nothing (``error`` says why and which option to change); the levels after either are still measured. A
    level's run is stopped ``timeout`` seconds after its measurement windows would have ended (no limit when
    None). Raises DamoClientError only when nothing can be measured at all (no images, no perf_analyzer)."""
    if not images:
        raise DamoClientError("perf needs at least one image")
    levels = concurrency_levels(concurrency)
    pixels = not isinstance(images[0], (bytes, bytearray))  # decoded frames, sent as PIXELS
    if datatype is None and not pixels:  # what the model's IMAGE takes (UINT8 before Triton's DALI backend)
        from damo_client.client import DamoClient
        with DamoClient(url, protocol, model, retries=1) as client:
            datatype = client.connect().image_datatype
    shape = [] if pixels or datatype == C.IMAGE_ENCODED.datatype else ["--shape", f"{C.IMAGE.name}:1"]
    binary = find_perf_analyzer()
    env = dict(os.environ)
    libs = library_dir(binary)
    if libs is not None:
        env["LD_LIBRARY_PATH"] = f"{libs}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(libs)
    limit = None if timeout is None else level_time_limit(measurement_interval_ms, max_trials, timeout)
    with tempfile.TemporaryDirectory(prefix="damo-perf-") as tmp:
        data = write_input_data(images, Path(tmp) / "input.json", datatype or "BYTES")
        for level in levels:
            out_csv = Path(tmp) / f"perf-{level}.csv"
            cmd = [str(binary), "-m", model, "-u", url, "-i", protocol, "-b", str(batch_size),
                   "--concurrency-range", f"{level}:{level}", "--input-data", str(data), *shape,
                   "--measurement-interval", str(measurement_interval_ms), "--max-trials", str(max_trials),
                   "--stability-percentage", f"{stability_percentage:g}", "-v", "-f", str(out_csv)]
            try:
                run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=limit)
            except subprocess.TimeoutExpired:
                yield failed_row(level, f"answers still outstanding {timeout:g} s after the measurement windows "
                                        f"(slower than that at this concurrency, or a stalled server): raise --timeout")
                continue
            output = run.stdout + run.stderr
            if run.returncode == 0 and out_csv.is_file():
                passes = _PASS.findall(output)
                for row in parse_csv(out_csv):
                    yield replace(row, mean_ms=float(passes[-1][1]) / 1000) if passes else row
            elif UNSTABLE in output and not _THREAD_ERROR.search(output):
                yield unstable_row(level, output)
            else:
                yield failed_row(level, failure_reason(output, run.returncode, measurement_interval_ms))


def run_perf_analyzer(images: list, url: str, protocol: str = "http", model: str = "damo_yolo",
                      concurrency: str = "1:4:1", batch_size: int = 1, measurement_interval_ms: int = 2000,
                      max_trials: int = 5, stability_percentage: float = 20.0, csv_path: Optional[Path] = None,
                      timeout: Optional[float] = None, datatype: Optional[str] = None) -> list[PerfRow]:
    """``sweep`` for callers that need every level measured: the rows (unstable ones included), or
    DamoClientError at the first level perf_analyzer measured nothing at. ``csv_path`` receives each row as
    it is measured."""
    rows = []
    with RowWriter(csv_path) as writer:
        for row in sweep(images, url, protocol, model, concurrency, batch_size, measurement_interval_ms,
                         max_trials, stability_percentage, timeout, datatype):
            if row.failed:
                raise DamoClientError(f"perf_analyzer failed at concurrency {row.concurrency}: {row.error}")
            writer.write(row)
            rows.append(row)
    return rows


class RowWriter:
    """Rows appended to a CSV file as they come (milliseconds; an unstable level has stable=False and empty
    percentiles, a failed one its reason in ``error``), each flushed to disk at once, so an interrupted or
    failing sweep keeps every level it measured. A None path writes nothing."""

    def __init__(self, path: Optional[Path]):
        self.path = None if path is None else Path(path)
        self._file: Optional[TextIO] = None
        self._writer: Optional[csv.DictWriter] = None

    def __enter__(self) -> RowWriter:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=[field.name for field in fields(PerfRow)])
            self._writer.writeheader()
            self._file.flush()
        return self

    def write(self, row: PerfRow) -> None:
        if self._writer is not None and self._file is not None:
            self._writer.writerow({k: ("" if isinstance(v, float) and v != v else v) for k, v in asdict(row).items()})
            self._file.flush()

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


def write_csv(rows: list[PerfRow], path: Path) -> Path:
    """The rows as CSV (see RowWriter)."""
    with RowWriter(path) as writer:
        for row in rows:
            writer.write(row)
    return Path(path)


HEADER = "concurrency  infer/s   p50 ms   p90 ms   p99 ms  queue ms  compute ms"


def format_row(r: PerfRow) -> str:
    """One line of the table under HEADER."""
    if r.failed:
        return f"{r.concurrency:>11}  failed: {r.error}"
    if not r.stable:
        return f"{r.concurrency:>11}  {r.throughput:>7.1f}  unstable: last trial's mean latency {r.mean_ms:.1f} ms"
    return (f"{r.concurrency:>11}  {r.throughput:>7.1f}  {r.p50_ms:>7.1f}  {r.p90_ms:>7.1f}  {r.p99_ms:>7.1f}"
            f"  {r.server_queue_ms:>8.2f}  {r.server_compute_ms:>10.1f}")


def summary_lines(rows: list[PerfRow]) -> list[str]:
    """What the table's marks mean and what to change: unstable and failed levels, one line each."""
    lines = []
    unstable = [str(r.concurrency) for r in rows if not r.stable and not r.failed]
    if unstable:
        lines.append(f"perf_analyzer found no stable measurement at concurrency {', '.join(unstable)}: "
                     "raise --measurement-interval or --max-trials, or accept a wider --stability")
    failed = [str(r.concurrency) for r in rows if r.failed]
    if failed:
        lines.append(f"perf_analyzer measured nothing at concurrency {', '.join(failed)} (the reasons are in the "
                     "table); the other levels are kept")
    return lines


def format_rows(rows: list[PerfRow]) -> str:
    return "\n".join([HEADER, *map(format_row, rows), *summary_lines(rows)])


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


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(prog="python -m damo_client.perf", description="perf_analyzer set-up")
    parser.add_argument("--install-launcher", action="store_true", required=True,
                        help="make this environment's perf_analyzer command find the libraries it links")
    parser.parse_args()
    try:
        launcher = install_launcher()
    except PerfUnavailable as exc:
        raise SystemExit(f"perf_analyzer: {exc}")
    print(f"perf_analyzer: {launcher or 'finds its libraries'} ready")
