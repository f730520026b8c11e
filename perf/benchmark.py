"""The CPU target's speed, measured in one run on one machine, with the ratios the product promises.

    python perf/benchmark.py CHECKPOINT [--images DIR] [--runs 60] [--interval-ms 3000] [--out perf/results]

1. raw      the detector's ONNX graph alone in onnxruntime (the served detector's thread count), batch 1,
            on already-preprocessed inputs; plus the in-process cost of decode, resize and NMS
2. served   DamoClient → ensemble (decode, resize, detector, NMS, map back) → detections, batch 1, sequential;
            the same request through bare tritonclient gives the SDK's own overhead
3. load     perf_analyzer with the real images at concurrency 1, 4 and 8, on the repository with dynamic
            batching and on the same repository without it
Prints the ratios (served/raw at p50, batching gain at concurrency 8 vs 1) against the targets and writes
benchmark.md, benchmark.json and plots under --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGET_SERVED_OVER_RAW = 1.15
TARGET_BATCHING_GAIN = 1.8
CONCURRENCY = (1, 4, 8)


def _timed(fn, runs: int, warmup: int = 3) -> list[float]:
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _stats(times) -> dict:
    return {"p50": float(np.percentile(times, 50)), "p90": float(np.percentile(times, 90)),
            "mean": float(np.mean(times))}


def measure_raw(repo: Path, images: list[bytes], runs: int) -> dict:
    import onnxruntime as ort

    from damo_yolo.data.preprocess import decode_image, preprocess
    from damo_yolo.postprocess import postprocess
    record = json.loads((repo / "damo_yolo" / "export.json").read_text())
    size, mode, pad = tuple(record["input_size"]), record["resize"], record["pad_value"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, (os.cpu_count() or 1) // record["detector_instances"])
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(repo / "damo_yolo_detector" / "1" / "model.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    decoded = [decode_image(d) for d in images]
    inputs = [preprocess(im, size, mode, pad)[0][None] for im in decoded]
    outputs = [session.run(None, {"images": x}) for x in inputs]
    n = len(images)
    stages = {
        "decode": _stats(_timed(lambda i: decode_image(images[i % n]), runs)),
        "resize": _stats(_timed(lambda i: preprocess(decoded[i % n], size, mode, pad), runs)),
        "detector": _stats(_timed(lambda i: session.run(None, {"images": inputs[i % n]}), runs)),
        "nms": _stats(_timed(lambda i: postprocess(outputs[i % n][0][0], outputs[i % n][1][0],
                                                   record["score_threshold"], record["iou_threshold"],
                                                   record["max_detections"]), runs)),
    }
    batch = np.concatenate([inputs[i % n] for i in range(8)])
    stages["detector_batch8_per_image"] = {k: v / 8 for k, v in
                                           _stats(_timed(lambda i: session.run(None, {"images": batch}),
                                                         max(5, runs // 4))).items()}
    return {"threads": options.intra_op_num_threads, "input_size": list(size), "stages": stages}


def measure_served(server, images: list[bytes], runs: int) -> dict:
    import tritonclient.http as httpclient

    from damo_client import DamoClient
    from damo_yolo import contract as C
    n = len(images)
    bare = httpclient.InferenceServerClient(server.http_url)

    def bare_call(i):
        image = httpclient.InferInput(C.IMAGE.name, [1, 1], C.IMAGE.datatype)
        image.set_data_from_numpy(np.array([[images[i % n]]], dtype=np.object_))
        result = bare.infer("damo_yolo", [image])
        result.as_numpy(C.BOXES.name)

    with DamoClient(server.http_url) as client:
        client.connect()
        sdk, raw = [], []
        for i in range(runs + 3):  # interleaved, so drift on a noisy machine hits both alike
            for fn, out in ((lambda i: client.detect(images[i % n]), sdk), (bare_call, raw)):
                start = time.perf_counter()
                fn(i)
                if i >= 3:
                    out.append((time.perf_counter() - start) * 1e3)
    bare.close()
    return {"sdk": _stats(sdk), "tritonclient": _stats(raw)}


def measure_load(server, images: list[bytes], interval_ms: int) -> list[dict]:
    from damo_client.perf import run_perf_analyzer
    rows = []
    for c in CONCURRENCY:
        (row,) = run_perf_analyzer(images, server.http_url, "http", "damo_yolo", str(c), 1, interval_ms,
                                   max_trials=6, stability_percentage=25)
        rows.append(row.__dict__)
    return rows


def _plots(results: dict, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    stages = results["raw"]["stages"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = ["decode", "resize", "detector", "nms", "served (SDK)"]
    values = [stages["decode"]["p50"], stages["resize"]["p50"], stages["detector"]["p50"], stages["nms"]["p50"],
              results["served"]["sdk"]["p50"]]
    ax.barh(labels, values, color=["#8ab", "#8ab", "#357", "#8ab", "#c63"])
    ax.set_xlabel("p50 latency, batch 1 (ms)")
    ax.set_title("where the time goes (in-process stages vs served end to end)")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for key, label in (("dynamic_batching", "dynamic batching"), ("no_batching", "no dynamic batching")):
        rows = results["load"][key]
        ax.plot([r["concurrency"] for r in rows], [r["throughput"] for r in rows], marker="o", label=label)
    ax.set(xlabel="concurrent requests", ylabel="images / s", title="throughput (perf_analyzer, real images)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=100)
    plt.close(fig)
    return ["latency.png", "throughput.png"]


def _report(results: dict) -> str:
    raw, served, load, ratios = results["raw"], results["served"], results["load"], results["ratios"]
    st = raw["stages"]
    lines = [
        "# CPU target benchmark", "",
        f"{results['when']} · {results['machine']} · model {results['variant']} at "
        f"{raw['input_size'][0]}x{raw['input_size'][1]} · {results['images']} photographs · "
        f"{results['runs']} runs per latency figure · one run, one machine", "",
        "## Ratios", "",
        "| ratio | measured | target | met |", "|---|---|---|---|",
        f"| served p50 / raw detector p50 (batch 1) | {ratios['served_over_raw']:.2f}x | "
        f"≤ {TARGET_SERVED_OVER_RAW}x | {'yes' if ratios['served_over_raw'] <= TARGET_SERVED_OVER_RAW else 'no'} |",
        f"| throughput at concurrency 8 / 1, dynamic batching | {ratios['batching_gain']:.2f}x | "
        f"≥ {TARGET_BATCHING_GAIN}x | {'yes' if ratios['batching_gain'] >= TARGET_BATCHING_GAIN else 'no'} |",
        f"| throughput at concurrency 8, batching on / off | {ratios['batching_vs_off_c8']:.2f}x | | |",
        f"| SDK overhead over bare tritonclient (p50) | {ratios['sdk_overhead_ms']:+.2f} ms | | |", "",
        "## Latency at batch 1 (ms)", "", "| what | p50 | p90 |", "|---|---|---|",
        f"| raw detector, onnxruntime, {raw['threads']} threads | {st['detector']['p50']:.2f} | "
        f"{st['detector']['p90']:.2f} |",
        f"| raw detector at batch 8, per image | {st['detector_batch8_per_image']['p50']:.2f} | "
        f"{st['detector_batch8_per_image']['p90']:.2f} |",
        f"| decode (OpenCV, in process) | {st['decode']['p50']:.2f} | {st['decode']['p90']:.2f} |",
        f"| resize (in process) | {st['resize']['p50']:.2f} | {st['resize']['p90']:.2f} |",
        f"| score filter + NMS (in process) | {st['nms']['p50']:.2f} | {st['nms']['p90']:.2f} |",
        f"| served, DamoClient.detect | {served['sdk']['p50']:.2f} | {served['sdk']['p90']:.2f} |",
        f"| served, bare tritonclient | {served['tritonclient']['p50']:.2f} | {served['tritonclient']['p90']:.2f} |",
        "", "## Throughput (perf_analyzer, HTTP, batch 1 per request)", "",
        "| concurrency | batching: images/s | p50 ms | p99 ms | no batching: images/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|"]
    for on, off in zip(load["dynamic_batching"], load["no_batching"]):
        lines.append(f"| {on['concurrency']} | {on['throughput']:.1f} | {on['p50_ms']:.1f} | {on['p99_ms']:.1f} | "
                     f"{off['throughput']:.1f} | {off['p50_ms']:.1f} | {off['p99_ms']:.1f} |")
    lines += ["", "![latency](latency.png)", "", "![throughput](throughput.png)", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "images")
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer measurement window")
    parser.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    args = parser.parse_args(argv)

    from damo_yolo.deploy.tritonserver import LocalServer
    from damo_yolo.tools.export import export_repository
    images = [p.read_bytes() for p in sorted(args.images.glob("*.jpg"))]
    if not images:
        raise SystemExit(f"no .jpg images in {args.images}")
    results = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores", "images": len(images), "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="damo-bench-") as tmp:
        repo = export_repository(args.checkpoint, Path(tmp) / "batching" / "triton_models")
        unbatched = export_repository(args.checkpoint, Path(tmp) / "plain" / "triton_models", dynamic_batching=False)
        results["variant"] = json.loads((repo / "damo_yolo" / "export.json").read_text())["variant"]
        print("raw detector and in-process stages ...", flush=True)
        results["raw"] = measure_raw(repo, images, args.runs)
        with LocalServer(repo) as server:
            print("served latency ...", flush=True)
            results["served"] = measure_served(server, images, args.runs)
            print("load with dynamic batching ...", flush=True)
            results["load"] = {"dynamic_batching": measure_load(server, images, args.interval_ms)}
        with LocalServer(unbatched) as server:
            print("load without dynamic batching ...", flush=True)
            results["load"]["no_batching"] = measure_load(server, images, args.interval_ms)
    on, off = results["load"]["dynamic_batching"], results["load"]["no_batching"]
    results["ratios"] = {
        "served_over_raw": results["served"]["sdk"]["p50"] / results["raw"]["stages"]["detector"]["p50"],
        "batching_gain": on[-1]["throughput"] / on[0]["throughput"],
        "batching_vs_off_c8": on[-1]["throughput"] / off[-1]["throughput"],
        "sdk_overhead_ms": results["served"]["sdk"]["p50"] - results["served"]["tritonclient"]["p50"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(results, indent=2) + "\n")
    _plots(results, args.out)
    (args.out / "benchmark.md").write_text(_report(results))
    print(_report(results).split("## Latency")[0])
    print(f"report: {args.out / 'benchmark.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
