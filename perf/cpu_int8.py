"""The CPU target's INT8 and its runtimes served against its FP32: latency at concurrency 1 and throughput at 8,
one interleaved run.

    python perf/cpu_int8.py [--models Ns T S] [--runs 40] [--interval-ms 3000] [--demo CHECKPOINT DATA]

For Ns at 416 and T at 640 (the shared official layouts with their fixed random weights) and S at 640 (weights
drawn from a fixed seed), 80 classes, damo-export writes FP32 and INT8 (calibrated on the shared photographs;
the CPU layout of damo_yolo.serving.quantize), each on onnxruntime and on OpenVINO (--cpu-runtime; its default
precision), as four models of one repository, and one tritonserver serves them, so the whole served pipeline
(decode, resize, detector, NMS) is in the figures:

1. c1  one request at a time through tritonclient (HTTP, the photographs in turn), the models in turn block by
       block (5 requests after an untimed one): p50 latency;
2. c8  perf_analyzer at concurrency 8, the models in turn window by window, twice: throughput.

What an INT8 export serves by default (``--cpu-runtime auto``) is what its own timing picks on this host
(damo_yolo.serving.runtimes.choose_runtime, run here on each model's INT8 graph beside its FP32 one): the INT8 on
the faster runtime, or the FP32 graph where INT8 gains nothing (damo_yolo.tools.export.NO_GAIN); the targets are
checked on it. ``--report cpu_int8.json`` writes the report of an earlier run again.
With ``--demo CHECKPOINT DATA`` (a project checkpoint and its synthetic dataset: DATA/train calibrates,
DATA/annotations/instances_val.json + DATA/val validate) the four are also exported from that trained model and
their COCO mAP measured through the served pipeline in this process, beside the speeds.

Prints each against onnxruntime FP32 (the CPU target's FP32 default) with the CPU's ISA and writes cpu_int8.md
and cpu_int8.json under --out.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = {"Ns": 416, "T": 640, "S": 640}  # the official input sizes
CONFIGS = {"fp32": {"precision": "fp32", "cpu_runtime": "onnxruntime"},  # model name → export options
           "int8": {"precision": "int8", "cpu_runtime": "onnxruntime"},
           "fp32_openvino": {"precision": "fp32", "cpu_runtime": "openvino"},
           "int8_openvino": {"precision": "int8", "cpu_runtime": "openvino"}}
INT8_MODEL = {"onnxruntime": "int8", "openvino": "int8_openvino"}  # the runtime export chooses → its model
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


def export_all(checkpoint: Path, variant, repo: Path, calibration: Path, **options) -> dict:
    """The four CONFIGS of ``checkpoint`` into ``repo``: seconds each export took."""
    from damo_yolo.tools.export import export_repository
    took = {}
    for name, config in CONFIGS.items():
        start = time.perf_counter()
        export_repository(checkpoint, repo, name=name, variant=variant, **config, **options,
                          calibration_images=calibration if config["precision"] == "int8" else None)
        took[name] = time.perf_counter() - start
    return took


def export_choice(repo: Path, calibration: Path) -> dict:
    """What ``--cpu-runtime auto`` chooses for this INT8 graph here: export's own timing of both runtimes."""
    from damo_yolo.serving.quantize import CalibrationImages
    from damo_yolo.serving.repository import repository_serving
    from damo_yolo.serving.resources import cpu_limit
    from damo_yolo.serving.runtimes import choose_runtime
    serving = repository_serving(repo, "int8")
    batch = next(iter(CalibrationImages(calibration, serving.input_size, serving.resize, serving.pad_value, 1, 1)))
    return choose_runtime(repo / "int8" / "1" / serving.model_file, batch, cpu_limit(),
                          fp32_path=repo / "fp32" / "1" / serving.model_file)[1]


def served_model(choice: dict) -> str:
    """The model of this repository that ``--cpu-runtime auto`` would serve, from export's timing ``choice``."""
    from damo_yolo.tools.export import NO_GAIN
    int8_ms = choice["median_ms"][choice["chosen"]]
    return "fp32" if int8_ms > NO_GAIN * choice["fp32_onnxruntime_ms"] else INT8_MODEL[choice["chosen"]]


def demo_accuracy(checkpoint: Path, data: Path, tmp: Path) -> dict:
    """COCO mAP of the four CONFIGS of a trained checkpoint, each through its served pipeline and runtime."""
    from damo_yolo.evaluation import evaluate_pipeline
    from damo_yolo.serving.repository import repository_serving
    repo = tmp / "demo" / "triton_models"
    export_all(checkpoint, None, repo, data / "train", thresholds="evaluation")
    found = {}
    for name in CONFIGS:
        serving = repository_serving(repo, name)
        found[name] = evaluate_pipeline(repo / name / "1" / serving.model_file, serving,
                                        data / "annotations" / "instances_val.json", data / "val")["mAP"]
        print(f"[demo] {name}: mAP {found[name]:.4f}", flush=True)
    return found


def latency_c1(url: str, images: list[bytes], runs: int, block: int = 5) -> dict:
    """p50 ms per request of each model: blocks of ``block`` requests, the models in turn block by block (a
    deployed server runs one model; switching model at every request would time cold caches), each block after
    one untimed request."""
    import tritonclient.http as httpclient
    client = httpclient.InferenceServerClient(url, network_timeout=600.0)
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}

    def call(model: str, image: bytes) -> float:
        inp = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[image]], dtype=object))
        start = time.perf_counter()
        client.infer(model, [inp])
        return (time.perf_counter() - start) * 1e3

    for r in range(max(1, runs // block)):
        for model in PRECISIONS[r % len(PRECISIONS):] + PRECISIONS[:r % len(PRECISIONS)]:
            call(model, images[r % len(images)])
            times[model] += [call(model, images[(r * block + i) % len(images)]) for i in range(block)]
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


def target_line(m: dict) -> str:
    """Whether what an INT8 export serves meets the model's TARGET_SPEEDUP at c1 and c8."""
    target = TARGET_SPEEDUP[m["variant"]]
    line = (f"{m['variant']} ≥ {target:g}x at c1 and c8: "
            + ("met" if min(m["speedup_c1"], m["speedup_c8"]) >= target else "NOT met"))
    if m["chosen"] != "fp32":
        return line + f" ({m['speedup_c1']:.2f}x, {m['speedup_c8']:.2f}x)"
    best = INT8_MODEL[m["export_choice"]["chosen"]]  # the INT8 auto would have served, measured beside
    c1, c8 = m["c1_p50_ms"], m["c8_images_per_s"]
    return line + (f" (INT8 gains nothing here, FP32 is served; the faster INT8, {best}, measured "
                   f"{c1['fp32'] / c1[best]:.2f}x, {c8[best] / c8['fp32']:.2f}x)")


def report(results: dict) -> str:
    lines = ["# The CPU target's INT8 and runtimes served against its FP32", "",
             f"{results['when']} · {results['machine']} · one run: c1 = {results['runs']} requests per model "
             "in blocks of 5, the models in turn, p50; c8 = perf_analyzer at concurrency 8, windows in turn, two "
             "per model. Served by the "
             "bundled tritonserver, the whole pipeline (decode, resize, detector, NMS), the shared photographs. "
             f"INT8: {results['method']}. OpenVINO at its default precision ({results['openvino_precision']} "
             "on this CPU). Speed-up: against onnxruntime FP32, the CPU target's FP32 default. **chosen**: what an "
             "INT8 export serves with `--cpu-runtime auto` (its default), by timing the INT8 graph on both runtimes "
             "beside the FP32 one on this host: the faster INT8, or FP32 where INT8 gains nothing.", "",
             "| model | served | c1 p50 ms | speed-up c1 | c8 images/s | speed-up c8 |", "|---|---|---|---|---|---|"]
    for m in results["models"]:
        c1, c8 = m["c1_p50_ms"], m["c8_images_per_s"]
        m["chosen"] = served_model(m["export_choice"])
        m["speedup_c1"], m["speedup_c8"] = c1["fp32"] / c1[m["chosen"]], c8[m["chosen"]] / c8["fp32"]
        for name in PRECISIONS:
            mark = " **chosen**" if name == m["chosen"] else ""
            lines.append(f"| {m['variant']} @ {m['input_size']} | {name}{mark} | {c1[name]:.1f} | "
                         f"{c1['fp32'] / c1[name]:.2f}x | {c8[name]:.1f} | {c8[name] / c8['fp32']:.2f}x |")
    lines += ["", "Export's timing of the INT8 detector (batch 1, median ms), beside the FP32 graph on onnxruntime: "
              + "; ".join(f"{m['variant']}: " + ", ".join(f"{k} {v:.1f}" for k, v in m["export_choice"]["median_ms"]
                                                             .items())
                          + f" (FP32 {m['export_choice']['fp32_onnxruntime_ms']:.1f})" for m in results["models"]),
              "",
        "Targets (what an INT8 export serves against FP32): " + "; ".join(
            target_line(m) for m in results["models"] if m["variant"] in TARGET_SPEEDUP)]
    if results.get("demo"):
        demo = results["demo"]
        lines += ["", f"Accuracy of the trained demo model ({demo['checkpoint']}), COCO mAP on its synthetic val set "
                  "through each served pipeline and runtime: " + ", ".join(
                      f"{name} {value:.4f}" for name, value in demo["mAP"].items())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--images", type=Path, default=SHARED / "data" / "images")
    parser.add_argument("--calibration-images", type=Path, default=SHARED / "data" / "images")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer measurement window")
    parser.add_argument("--demo", nargs=2, type=Path, metavar=("CHECKPOINT", "DATA"),
                        help="a trained checkpoint and its synthetic dataset: mAP of each configuration")
    parser.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    parser.add_argument("--report", type=Path, metavar="JSON", help="write the report of an earlier run again")
    args = parser.parse_args(argv)
    from results_io import new_results, save  # perf/'s own helper, beside this script
    if args.report:
        import json
        results = json.loads(args.report.read_text())
        text = report(results)
        save(args.out, "cpu_int8", results, text)
        print(text)
        return 0

    from damo_yolo.serving.quantize import METHODS
    from damo_yolo.serving.tritonserver import LocalServer
    images = [p.read_bytes() for p in sorted(args.images.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    import openvino as ov
    precision = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()
    results = new_results(runs=args.runs, method=METHODS["cpu"], openvino_precision=precision, models=[])
    print(f"[cpu_int8] {results['machine']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="damo-cpu-int8-") as tmp:
        if args.demo:
            results["demo"] = {"checkpoint": str(args.demo[0]), "mAP": demo_accuracy(*args.demo, Path(tmp))}
        for variant in args.models:
            repo = Path(tmp) / variant / "triton_models"
            print(f"[{variant}] exporting FP32 and INT8 on both runtimes ...", flush=True)
            took = export_all(checkpoint_for(variant, Path(tmp)), variant, repo, args.calibration_images)
            choice = export_choice(repo, args.calibration_images)
            chosen = served_model(choice)
            with LocalServer(repo, Path(tmp) / variant / "server.log", model="int8") as server:
                print(f"[{variant}] c1 latency ...", flush=True)
                c1 = latency_c1(server.http_url, images, args.runs)
                print(f"[{variant}] c8 throughput ...", flush=True)
                c8 = throughput_c8(server.http_url, images, args.interval_ms)
            row = {"variant": variant, "input_size": MODELS[variant], "export_s": took, "c1_p50_ms": c1,
                   "c8_images_per_s": c8, "export_choice": choice}
            print(f"[{variant}] c1 p50 ms {c1}, c8 images/s {c8}, served by an INT8 export: {chosen}", flush=True)
            results["models"].append(row)
    text = report(results)
    save(args.out, "cpu_int8", results, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
