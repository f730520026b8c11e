"""INT8 (Q/DQ, explicit quantization) against FP32 on the CPU target: detector latency in onnxruntime, one run,
for both INT8 layouts (damo_yolo.serving.quantize: the CPU target's and the TensorRT one of the GPU target).

    python perf/int8_latency.py demo/model/damoyolo_tinynasL18_Ns_synthetic.pth [--t-weights T.pth] [--runs 40]

For Ns at its input size (the checkpoint given) and T at 640 (the shared official layout, fixed random weights),
the FP32 ONNX that damo-export serves and its INT8 Q/DQ twins in each layout (calibrated on --calibration-images,
default the shared photographs) run in onnxruntime with the server's settings, batch 1 and batch 8, interleaved
so that drift on a noisy machine hits all alike. Prints the INT8 / FP32 ratios with the CPU's ISA and writes
int8.md and int8.json under --out. Accuracy is measured in CI (tests/serve/test_int8.py); the served comparison
is perf/cpu_int8.py.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def _pipeline(path: Path, meta):
    """The server's own CpuPipeline (same onnxruntime threads and options) around ``path``."""
    from damo_yolo.serving.cpu_pipeline import CpuPipeline
    from damo_yolo.tools.export import ExportOptions
    return CpuPipeline(path, ExportOptions().serving_config(meta))


def measure(label: str, checkpoint: Path, variant, calibration: Path, runs: int, tmp: Path) -> dict:
    from damo_yolo.models import load_model
    from damo_yolo.serving.onnx_export import export_onnx
    from damo_yolo.serving.quantize import quantize_onnx
    model, meta = load_model(checkpoint, variant)
    size = tuple(meta.input_size)
    fp32 = export_onnx(model, tmp / f"{label}-fp32.onnx", input_size=size)
    graphs, quantize_s = {"fp32": fp32}, {}
    for layout in ("cpu", "tensorrt"):
        start = time.perf_counter()
        graphs[layout] = quantize_onnx(fp32, tmp / f"{label}-{layout}.onnx", calibration, size, meta.resize,
                                       meta.pad_value, layout=layout)
        quantize_s[layout] = time.perf_counter() - start
    pipes = {k: _pipeline(path, meta) for k, path in graphs.items()}
    sessions = {k: p.detector for k, p in pipes.items()}
    rng = np.random.default_rng(0)
    result = {"label": label, "variant": meta.variant, "input_size": list(size), "quantize_s": quantize_s,
              "size_mb": {k: p.stat().st_size / 1e6 for k, p in graphs.items()}}
    for batch in (1, 8):
        x = rng.uniform(0, 255, (batch, 3, *size)).astype(np.float32)
        times = {k: [] for k in sessions}
        for s in sessions.values():
            for _ in range(3):
                s.run(x)
        for _ in range(runs if batch == 1 else max(5, runs // 4)):
            for k, s in sessions.items():
                t = time.perf_counter()
                s.run(x)
                times[k].append((time.perf_counter() - t) * 1e3 / batch)
        result[f"batch{batch}"] = {k: float(np.percentile(v, 50)) for k, v in times.items()}
    for p in pipes.values():
        p.close()
    return result


def report(results: dict) -> str:
    lines = ["# INT8 against FP32 on the CPU target (onnxruntime, the detector alone)", "",
             f"{results['when']} · {results['machine']} · {results['runs']} runs at batch 1 · one run, one machine. "
             f"INT8: Q/DQ ONNX from damo_yolo.serving.quantize in its two layouts — cpu (the CPU target's: U8S8, "
             f"outputs quantized, head in float) and tensorrt (the GPU target's: symmetric, Conv inputs) — "
             f"calibrated on {results['calibration']}. Time per image, p50; ratio = INT8 / FP32 (below 1: faster).", "",
             "| model | FP32 ms, batch 1 | cpu INT8 | ratio | tensorrt INT8 | ratio | FP32 ms, batch 8 | cpu INT8 "
             "| ratio | tensorrt INT8 | ratio | ONNX MB FP32 → cpu INT8 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in results["models"]:
        cells = []
        for b in (m["batch1"], m["batch8"]):
            cells += [f"{b['fp32']:.2f}", f"{b['cpu']:.2f}", f"{b['cpu'] / b['fp32']:.2f}x",
                      f"{b['tensorrt']:.2f}", f"{b['tensorrt'] / b['fp32']:.2f}x"]
        lines.append(f"| {m['label']} ({m['variant']} {m['input_size'][0]}x{m['input_size'][1]}) | "
                     + " | ".join(cells) + f" | {m['size_mb']['fp32']:.1f} → {m['size_mb']['cpu']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="the Ns checkpoint (demo/model/...)")
    parser.add_argument("--t-weights", type=Path, default=SHARED / "fixtures" / "official" / "T_weights.pth")
    parser.add_argument("--calibration-images", type=Path, default=SHARED / "data" / "images")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    args = parser.parse_args(argv)
    from results_io import new_results, save  # perf/'s own helper, beside this script
    results = new_results(runs=args.runs, calibration=str(args.calibration_images), models=[])
    with tempfile.TemporaryDirectory(prefix="damo-int8-") as tmp:
        results["models"].append(measure("Ns", args.checkpoint, None, args.calibration_images, args.runs, Path(tmp)))
        results["models"].append(measure("T", args.t_weights, "T", args.calibration_images, args.runs, Path(tmp)))
    text = report(results)
    save(args.out, "int8", results, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
