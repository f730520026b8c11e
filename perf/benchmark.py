"""The CPU target's speed, measured in one run on one machine, with the ratios the product promises.

    python perf/benchmark.py demo/model/damoyolo_tinynasL18_Ns_synthetic.pth [--t-weights T.pth] [--runs 40]

For each model — Ns at 256 (the checkpoint given) and T at 640 with 80 classes (the shared official T layout
with fixed random weights) — exported with the serving defaults:
1. in-process  the stages alone (decode, resize, detector, NMS at the served defaults) and the whole pipeline
               in one Python process: damo_yolo.serving.cpu_pipeline.CpuPipeline, the very code the server runs
               (same ONNX graph, same threads, same photographs), batch 1
2. served      one request at a time through bare tritonclient (the server's cost) and through DamoClient
               (the SDK's checks on top), HTTP, batch 1, interleaved with the in-process runs
3. load        perf_analyzer with the real photographs at concurrency 1, 4 and 8, with dynamic batching and on
               the same repository without it
4. worst case  (T) a request with SCORE_THRESHOLD 0: 672,000 candidates, served, against the detector's latency
Prints the ratios against the targets and writes benchmark.md, benchmark.json and plots under --out.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TARGET_SERVED_OVER_IN_PROCESS = 1.25
TARGET_CONCURRENCY_GAIN = 1.8  # throughput at concurrency 8 / 1, dynamic batching
TARGET_BATCHING_ON_OVER_OFF = 1.0  # at concurrency 8
TARGET_POSTPROCESS_MS = 0.5  # p50 at the serving defaults
WORST_CASE_ALLOWANCE_MS = 150  # as tests/serve/test_serving_budget.py: decode 1280x720, top-1,000 of 672,000, NMS
CONCURRENCY = (1, 4, 8)


def _stats(times) -> dict:
    return {"p50": float(np.percentile(times, 50)), "p90": float(np.percentile(times, 90)),
            "mean": float(np.mean(times))}


def _timed(fn, runs: int, warmup: int = 3) -> list[float]:
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _pipeline(repo: Path):
    """The served model's own pipeline, in process, with the repository's serving configuration."""
    from damo_yolo.serving.cpu_pipeline import CpuPipeline
    from damo_yolo.serving.repository import repository_serving
    serving = repository_serving(repo)
    return CpuPipeline(repo / "damo_yolo" / "1" / serving.model_file, serving), serving


def measure_stages(repo: Path, images: list[bytes], runs: int) -> dict:
    """Each stage alone, in process, at the served defaults."""
    from damo_yolo.data.preprocess import decode_image, preprocess
    from damo_yolo.postprocess import postprocess
    pipe, serving = _pipeline(repo)
    size, mode, pad = serving.input_size, serving.resize, serving.pad_value
    decoded = [decode_image(d) for d in images]
    inputs = [preprocess(im, size, mode, pad)[0][None] for im in decoded]
    outputs = [pipe.detector.run(x) for x in inputs]
    n = len(images)
    stages = {
        "decode": _stats(_timed(lambda i: decode_image(images[i % n]), runs)),
        "resize": _stats(_timed(lambda i: preprocess(decoded[i % n], size, mode, pad), runs)),
        "detector": _stats(_timed(lambda i: pipe.detector.run(inputs[i % n]), runs)),
        "nms": _stats(_timed(lambda i: postprocess(outputs[i % n][0][0], outputs[i % n][1][0],
                                                   serving.score_threshold, serving.iou_threshold,
                                                   serving.max_detections), runs)),
    }
    batch = np.concatenate([inputs[i % n] for i in range(8)])
    stages["detector_batch8_per_image"] = {k: v / 8 for k, v in _stats(
        _timed(lambda i: pipe.detector.run(batch), max(5, runs // 4))).items()}
    pipe.close()
    return {"input_size": list(size), "threads": os.cpu_count(), "stages": stages,
            "defaults": {k: serving.to_json()[k] for k in ("score_threshold", "iou_threshold", "max_detections")}}


def measure_latency(repo: Path, server, images: list[bytes], runs: int) -> dict:
    """In-process pipeline, bare tritonclient and the SDK, one image at a time, interleaved so drift on a noisy
    machine hits all three alike."""
    import tritonclient.http as httpclient

    from damo_client import DamoClient
    from damo_yolo import contract as C
    pipe, _ = _pipeline(repo)
    n = len(images)
    bare = httpclient.InferenceServerClient(server.http_url)

    def in_process(i):
        data = np.array([images[i % n]], dtype=object)
        score, iou = pipe.thresholds(1)
        pipe.run({0: (data, score, iou)})

    def bare_call(i):
        image = httpclient.InferInput(C.IMAGE.name, [1, 1], C.IMAGE.datatype)
        image.set_data_from_numpy(np.array([[images[i % n]]], dtype=np.object_))
        bare.infer("damo_yolo", [image]).as_numpy(C.BOXES.name)

    out = {"in_process": [], "tritonclient": [], "sdk": []}
    with DamoClient(server.http_url) as client:
        client.connect()
        calls = (("in_process", in_process), ("tritonclient", bare_call),
                 ("sdk", lambda i: client.detect(images[i % n])))
        for i in range(runs + 3):
            for key, fn in calls:
                start = time.perf_counter()
                fn(i)
                if i >= 3:
                    out[key].append((time.perf_counter() - start) * 1e3)
    bare.close()
    pipe.close()
    return {key: _stats(times) for key, times in out.items()}


def measure_in_process_ceiling(repo: Path, images: list[bytes], seconds: float = 5.0) -> dict:
    """Images/s of the in-process pipeline fed batches of 8 (decode in the thread pool, one onnxruntime call, NMS)
    with nothing else running: what this machine can do without a server, the ceiling of served throughput."""
    pipe, _ = _pipeline(repo)
    batch = np.array([images[i % len(images)] for i in range(8)], dtype=object)
    score, iou = pipe.thresholds(8)
    pipe.run({0: (batch, score, iou)})
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        pipe.run({0: (batch, score, iou)})
        done += 8
    pipe.close()
    return {"images_per_s": done / (time.perf_counter() - start)}


def measure_load(server, images: list[bytes], interval_ms: int) -> list[dict]:
    from damo_client.perf import run_perf_analyzer
    rows = []
    for c in CONCURRENCY:
        (row,) = run_perf_analyzer(images, server.http_url, "http", "damo_yolo", str(c), 1, interval_ms,
                                   max_trials=6, stability_percentage=25)
        rows.append(row.__dict__)
    return rows


def measure_worst_case(server, image: bytes, detector_ms: float, runs: int = 5) -> dict:
    """A score-0 request (every prior × class a candidate), served."""
    import tritonclient.http as httpclient
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=600.0)

    def call(i):
        inp = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[image]], dtype=object))
        thr = httpclient.InferInput("SCORE_THRESHOLD", [1, 1], "FP32")
        thr.set_data_from_numpy(np.zeros((1, 1), np.float32))
        client.infer("damo_yolo", [inp, thr])

    stats = _stats(_timed(call, runs, warmup=1))
    client.close()
    budget = 2 * detector_ms + WORST_CASE_ALLOWANCE_MS
    return {**stats, "detector_ms": detector_ms, "budget_ms": budget}


def benchmark_model(label: str, checkpoint: Path, variant, images: list[bytes], args, tmp: Path,
                    worst_case: bool) -> dict:
    from damo_yolo.serving.repository import repository_summary
    from damo_yolo.serving.tritonserver import LocalServer
    from damo_yolo.tools.export import export_repository
    folder = tmp / label.replace(" ", "_")
    repo = export_repository(checkpoint, folder / "batching", variant=variant)
    plain = export_repository(checkpoint, folder / "plain", variant=variant, dynamic_batching=False)
    print(f"[{label}] in-process stages ...", flush=True)
    result = {"label": label, "variant": repository_summary(repo)["variant"]}
    result.update(measure_stages(repo, images, args.runs))
    result["in_process_ceiling"] = measure_in_process_ceiling(repo, images)
    with LocalServer(repo) as server:
        print(f"[{label}] in-process pipeline vs served latency ...", flush=True)
        result["latency"] = measure_latency(repo, server, images, args.runs)
        print(f"[{label}] load with dynamic batching ...", flush=True)
        result["load"] = {"dynamic_batching": measure_load(server, images, args.interval_ms)}
        if worst_case:
            print(f"[{label}] worst-case request ...", flush=True)
            biggest = max(images, key=len)
            result["worst_case"] = measure_worst_case(server, biggest, result["stages"]["detector"]["p50"])
    with LocalServer(plain) as server:
        print(f"[{label}] load without dynamic batching ...", flush=True)
        result["load"]["no_batching"] = measure_load(server, images, args.interval_ms)
    on, off = result["load"]["dynamic_batching"], result["load"]["no_batching"]
    lat = result["latency"]
    result["ratios"] = {
        "served_over_in_process": lat["tritonclient"]["p50"] / lat["in_process"]["p50"],
        "sdk_over_in_process": lat["sdk"]["p50"] / lat["in_process"]["p50"],
        "concurrency_gain": on[-1]["throughput"] / on[0]["throughput"],
        "batching_on_over_off_c8": on[-1]["throughput"] / off[-1]["throughput"],
        "c8_over_in_process_ceiling": on[-1]["throughput"] / result["in_process_ceiling"]["images_per_s"],
    }
    return result


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _report(results: dict) -> str:
    models = results["models"]
    lines = ["# CPU target benchmark", "",
             f"{results['when']} · {results['machine']} · {results['images']} photographs · {results['runs']} runs "
             f"per latency figure · one run, one machine. Each model is exported with the serving defaults and served "
             f"as one python-backend model (decode, onnxruntime, NMS) by the bundled tritonserver.", "",
             "## Targets", "", "| target | " + " | ".join(m["label"] for m in models) + " | met |",
             "|---|" + "---|" * len(models) + "---|"]

    def row(name, values, ok):
        lines.append(f"| {name} | " + " | ".join(values) + f" | {_met(ok)} |")

    r = [m["ratios"] for m in models]
    row(f"served p50 / in-process pipeline p50, batch 1 (≤ {TARGET_SERVED_OVER_IN_PROCESS}x)",
        [f"{x['served_over_in_process']:.2f}x" for x in r],
        all(x["served_over_in_process"] <= TARGET_SERVED_OVER_IN_PROCESS for x in r))
    row(f"throughput concurrency 8 / 1, batching on (≥ {TARGET_CONCURRENCY_GAIN}x)",
        [f"{x['concurrency_gain']:.2f}x" for x in r], all(x["concurrency_gain"] >= TARGET_CONCURRENCY_GAIN for x in r))
    row("throughput at concurrency 8, batching on / off (≥ 1x)", [f"{x['batching_on_over_off_c8']:.2f}x" for x in r],
        all(x["batching_on_over_off_c8"] >= TARGET_BATCHING_ON_OVER_OFF for x in r))
    nms = [m["stages"]["nms"]["p50"] for m in models]
    row(f"post-processing p50 at the serving defaults (≤ {TARGET_POSTPROCESS_MS} ms)", [f"{v:.2f} ms" for v in nms],
        all(v <= TARGET_POSTPROCESS_MS for v in nms))
    worst = [m.get("worst_case") for m in models]
    row(f"worst request (score 0) ≤ 2x detector + {WORST_CASE_ALLOWANCE_MS} ms",
        [f"{w['p50']:.0f} ms (budget {w['budget_ms']:.0f})" if w else "–" for w in worst],
        all(w["p50"] <= w["budget_ms"] for w in worst if w))
    lines += ["", "| for comparison | " + " | ".join(m["label"] for m in models) + " |", "|---|" + "---|" * len(models),
              "| in-process pipeline, batches of 8, images/s (the machine's ceiling without a server) | " +
              " | ".join(f"{m['in_process_ceiling']['images_per_s']:.1f}" for m in models) + " |",
              "| served throughput at concurrency 8 / that ceiling | " +
              " | ".join(f"{m['ratios']['c8_over_in_process_ceiling']:.2f}x" for m in models) + " |",
              "| SDK p50 / in-process p50 (DamoClient's own checks on top) | " +
              " | ".join(f"{m['ratios']['sdk_over_in_process']:.2f}x" for m in models) + " |", ""]
    for m in models:
        st, lat = m["stages"], m["latency"]
        d = m["defaults"]
        lines += [f"## {m['label']}: {m['variant']} at {m['input_size'][0]}x{m['input_size'][1]}", "",
                  f"Served defaults: score > {d['score_threshold']:g}, IoU {d['iou_threshold']:g}, "
                  f"{d['max_detections']} boxes. onnxruntime with {m['threads']} threads.", "",
                  "| batch 1, ms | p50 | p90 |", "|---|---|---|"]
        for key, name in (("decode", "decode (OpenCV)"), ("resize", "resize"), ("detector", "detector (onnxruntime)"),
                          ("detector_batch8_per_image", "detector at batch 8, per image"),
                          ("nms", "score filter + NMS + top-K")):
            lines.append(f"| {name} | {st[key]['p50']:.2f} | {st[key]['p90']:.2f} |")
        for key, name in (("in_process", "**in-process pipeline** (CpuPipeline, one process)"),
                          ("tritonclient", "**served**, bare tritonclient (HTTP)"),
                          ("sdk", "served, DamoClient.detect")):
            lines.append(f"| {name} | {lat[key]['p50']:.2f} | {lat[key]['p90']:.2f} |")
        if m.get("worst_case"):
            w = m["worst_case"]
            lines.append(f"| worst request, score 0 (served) | {w['p50']:.1f} | {w['p90']:.1f} |")
        lines += ["",
                  "| concurrency | batching: images/s | p50 ms | p99 ms | no batching: images/s | p50 ms | p99 ms |",
                  "|---|---|---|---|---|---|---|"]
        for on, off in zip(m["load"]["dynamic_batching"], m["load"]["no_batching"]):
            mark = "" if on.get("stable", True) and off.get("stable", True) else " (unstable)"
            lines.append(f"| {on['concurrency']}{mark} | {on['throughput']:.1f} | {on['p50_ms']:.1f} | "
                         f"{on['p99_ms']:.1f} | {off['throughput']:.1f} | {off['p50_ms']:.1f} | {off['p99_ms']:.1f} |")
        lines.append("")
    lines += ["![latency](latency.png)", "", "![throughput](throughput.png)", ""]
    return "\n".join(lines)


def _plots(results: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = results["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 3.5), squeeze=False)
    for ax, m in zip(axes[0], models):
        st, lat = m["stages"], m["latency"]
        labels = ["decode", "resize", "detector", "NMS", "in-process pipeline", "served"]
        values = [st["decode"]["p50"], st["resize"]["p50"], st["detector"]["p50"], st["nms"]["p50"],
                  lat["in_process"]["p50"], lat["tritonclient"]["p50"]]
        ax.barh(labels, values, color=["#8ab", "#8ab", "#357", "#8ab", "#596", "#c63"])
        ax.set_xlabel("p50 latency, batch 1 (ms)")
        ax.set_title(f"{m['label']}: stages, in-process, served")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=100)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 3.5), squeeze=False)
    for ax, m in zip(axes[0], models):
        for key, label in (("dynamic_batching", "dynamic batching"), ("no_batching", "no dynamic batching")):
            rows = m["load"][key]
            ax.plot([r["concurrency"] for r in rows], [r["throughput"] for r in rows], marker="o", label=label)
        ax.set(xlabel="concurrent requests", ylabel="images / s", title=f"{m['label']}: throughput (perf_analyzer)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="the Ns checkpoint (demo/model/...)")
    parser.add_argument("--t-weights", type=Path, default=SHARED / "fixtures" / "official" / "T_weights.pth",
                        help="an official-layout T checkpoint (default: the shared fixed random weights)")
    parser.add_argument("--images", type=Path, default=SHARED / "data" / "images")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer measurement window")
    parser.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    args = parser.parse_args(argv)
    from results_io import new_results, save  # perf/'s own helper, beside this script
    images = [p.read_bytes() for p in sorted(args.images.glob("*.jpg"))]
    if not images:
        raise SystemExit(f"no .jpg images in {args.images}")
    results = new_results(images=len(images), runs=args.runs, models=[])
    with tempfile.TemporaryDirectory(prefix="damo-bench-") as tmp:
        results["models"].append(benchmark_model("Ns 256", args.checkpoint, None, images, args, Path(tmp), False))
        results["models"].append(benchmark_model("T 640", args.t_weights, "T", images, args, Path(tmp), True))
    report = _report(results)
    save(args.out, "benchmark", results, report)
    _plots(results, args.out)
    print(report.split("## Ns")[0])
    print(f"report: {args.out / 'benchmark.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
