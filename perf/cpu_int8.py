"""The CPU target's INT8 and its runtimes served against its FP32: latency at concurrency 1 and throughput at 8,
one interleaved run.

    python perf/cpu_int8.py [--models Ns T S] [--runs 40] [--interval-ms 3000]

For Ns at 416 and T at 640 (the shared official layouts with their fixed random weights) and S at 640 (weights
drawn from a fixed seed), 80 classes, damo-export writes FP32 and INT8 (calibrated on the shared photographs;
the CPU layout of damo_yolo.serving.quantize), each on onnxruntime and on OpenVINO (--cpu-runtime; its default
precision), as four models of one repository, and one tritonserver serves them, so the whole served pipeline
(decode, resize, detector, NMS) is in the figures:

1. c1  one request at a time through tritonclient (HTTP, the photographs in turn), the models in turn request by
       request: p50 latency;
2. c8  perf_analyzer at concurrency 8, the models in turn window by window, twice: throughput.

Prints each against onnxruntime FP32 (the CPU target's default today) with the CPU's ISA and writes cpu_int8.md
and cpu_int8.json under --out.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = {"Ns": 416, "T": 640, "S": 640}  # the official input sizes
CONFIGS = {"fp32": {"precision": "fp32"}, "int8": {"precision": "int8"},  # model name → export options
           "fp32_openvino": {"precision": "fp32", "cpu_runtime": "openvino"},
           "int8_openvino": {"precision": "int8", "cpu_runtime": "openvino"}}
PRECISIONS = tuple(CONFIGS)
TARGET_SPEEDUP = {"T": 2.0, "Ns": 1.0}  # the product's promise: INT8 at least this much faster (c1 and c8)


def checkpoint_for(variant: str, tmp: Path) -> Path:
    """The shared official weights of Ns and T; S's drawn from a fixed seed in the official layout."""
    shared = SHARED / "fixtures" / "official" / f"{variant}_weights.pth"
    if shared.is_file():
        return shared
    import torch

    from damo_yolo.models import build_model
    torch.manual_seed(0)
    path = tmp / f"{variant}_random.pth"
    torch.save({"model": build_model(variant).state_dict()}, path)
    return path


def export_both(variant: str, repo: Path, calibration: Path, tmp: Path) -> dict:
    from damo_yolo.tools.export import export_repository
    checkpoint, took = checkpoint_for(variant, tmp), {}
    for name, options in CONFIGS.items():
        start = time.perf_counter()
        export_repository(checkpoint, repo, name=name, variant=variant, **options,
                          calibration_images=calibration if options["precision"] == "int8" else None)
        took[name] = time.perf_counter() - start
    return took


def latency_c1(url: str, images: list[bytes], runs: int) -> dict:
    """p50 ms per request of each model, alternating request by request."""
    import tritonclient.http as httpclient
    client = httpclient.InferenceServerClient(url, network_timeout=600.0)
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}

    def call(model: str, image: bytes) -> float:
        inp = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[image]], dtype=object))
        start = time.perf_counter()
        client.infer(model, [inp])
        return (time.perf_counter() - start) * 1e3

    for i in range(3):  # warm-up
        for model in PRECISIONS:
            call(model, images[i % len(images)])
    for i in range(runs):
        for model in PRECISIONS[i % len(PRECISIONS):] + PRECISIONS[:i % len(PRECISIONS)]:
            times[model].append(call(model, images[i % len(images)]))
    client.close()
    return {p: float(np.percentile(v, 50)) for p, v in times.items()}


def throughput_c8(url: str, images: list[bytes], interval_ms: int, rounds: int = 2) -> dict:
    """Images per second of each model at concurrency 8 (perf_analyzer), alternating window by window."""
    from damo_client.perf import run_perf_analyzer
    seen: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for r in range(rounds):
        for model in (PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]):
            (row,) = run_perf_analyzer(images, url, "http", model, "8", 1, interval_ms, max_trials=6,
                                       stability_percentage=25)
            seen[model].append(row.throughput)
    return {p: float(np.mean(v)) for p, v in seen.items()}


def report(results: dict) -> str:
    lines = ["# The CPU target's INT8 and runtimes served against its FP32", "",
             f"{results['when']} · {results['machine']} · one run: c1 = {results['runs']} requests per model "
             "in turn, p50; c8 = perf_analyzer at concurrency 8, windows in turn, two per model. Served by the "
             "bundled tritonserver, the whole pipeline (decode, resize, detector, NMS), the shared photographs. "
             f"INT8: {results['method']}. OpenVINO at its default precision ({results['openvino_precision']} "
             "on this CPU). Speed-up: against onnxruntime FP32, the CPU target's default.", "",
             "| model | served | c1 p50 ms | speed-up c1 | c8 images/s | speed-up c8 |", "|---|---|---|---|---|---|"]
    for m in results["models"]:
        c1, c8 = m["c1_p50_ms"], m["c8_images_per_s"]
        for name in PRECISIONS:
            lines.append(f"| {m['variant']} @ {m['input_size']} | {name} | {c1[name]:.1f} | "
                         f"{c1['fp32'] / c1[name]:.2f}x | {c8[name]:.1f} | {c8[name] / c8['fp32']:.2f}x |")
    lines += ["", "Targets (INT8 on onnxruntime against FP32): " + "; ".join(
        f"{m['variant']} ≥ {TARGET_SPEEDUP[m['variant']]:g}x at c1 and c8: "
        + ("met" if min(m["speedup_c1"], m["speedup_c8"]) >= TARGET_SPEEDUP[m["variant"]] else "NOT met")
        for m in results["models"] if m["variant"] in TARGET_SPEEDUP)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--images", type=Path, default=SHARED / "data" / "images")
    parser.add_argument("--calibration-images", type=Path, default=SHARED / "data" / "images")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer measurement window")
    parser.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    args = parser.parse_args(argv)
    from damo_yolo.serving.quantize import METHODS
    from damo_yolo.serving.resources import cpu_isa
    from damo_yolo.serving.tritonserver import LocalServer
    images = [p.read_bytes() for p in sorted(args.images.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    import openvino as ov
    precision = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()
    results = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": cpu_isa(),
               "runs": args.runs, "method": METHODS["cpu"], "openvino_precision": precision, "models": []}
    print(f"[cpu_int8] {results['machine']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="damo-cpu-int8-") as tmp:
        for variant in args.models:
            repo = Path(tmp) / variant / "triton_models"
            print(f"[{variant}] exporting FP32 and INT8 ...", flush=True)
            took = export_both(variant, repo, args.calibration_images, Path(tmp))
            with LocalServer(repo, Path(tmp) / variant / "server.log", model="int8") as server:
                print(f"[{variant}] c1 latency ...", flush=True)
                c1 = latency_c1(server.http_url, images, args.runs)
                print(f"[{variant}] c8 throughput ...", flush=True)
                c8 = throughput_c8(server.http_url, images, args.interval_ms)
            row = {"variant": variant, "input_size": MODELS[variant], "export_s": took, "c1_p50_ms": c1,
                   "c8_images_per_s": c8, "speedup_c1": c1["fp32"] / c1["int8"],
                   "speedup_c8": c8["int8"] / c8["fp32"]}
            print(f"[{variant}] c1 p50 ms {c1}, c8 images/s {c8}", flush=True)
            results["models"].append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_int8.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results)
    (args.out / "cpu_int8.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
