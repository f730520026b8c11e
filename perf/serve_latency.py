"""Served latency vs the detector alone, measured in one run on one machine.

    python perf/serve_latency.py CHECKPOINT [--images DIR] [--runs 50]

Exports CHECKPOINT to a temporary repository, starts the bundled tritonserver on free localhost ports,
and measures at batch 1, sequentially:
  raw      the detector's ONNX graph in onnxruntime alone (same threads as the served detector),
           on an already-preprocessed input
  served   client → ensemble (decode, resize, detector, NMS, map back) → detections, over HTTP
and prints p50/p90 of each and the served/raw ratio.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _percentiles(times_ms):
    return np.percentile(times_ms, 50), np.percentile(times_ms, 90)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "images")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import tritonclient.http as httpclient

    from damo_yolo.data.preprocess import decode_image, preprocess
    from damo_yolo.deploy.tritonserver import free_ports
    from damo_yolo.tools.export import export_repository

    images = [p.read_bytes() for p in sorted(args.images.glob("*.jpg"))]
    with tempfile.TemporaryDirectory() as tmp:
        repo = export_repository(args.checkpoint, Path(tmp) / "repo")
        onnx_path = repo / "damo_yolo_detector" / "1" / "model.onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        size = tuple(session.get_inputs()[0].shape[2:])
        inputs = [preprocess(decode_image(d), size)[0][None] for d in images]
        for x in inputs[:3]:
            session.run(None, {"images": x})
        raw = []
        for i in range(args.runs):
            start = time.perf_counter()
            session.run(None, {"images": inputs[i % len(inputs)]})
            raw.append((time.perf_counter() - start) * 1e3)
        del session

        http_port, grpc_port, metrics_port = free_ports(3)
        server = subprocess.Popen([str(Path(sys.executable).parent / "tritonserver"), "--model-repository", str(repo),
                                   f"--http-port={http_port}", f"--grpc-port={grpc_port}",
                                   f"--metrics-port={metrics_port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
            deadline = time.time() + 120
            while True:
                try:
                    if client.is_model_ready("damo_yolo"):
                        break
                except Exception:
                    pass
                if time.time() > deadline:
                    raise SystemExit("tritonserver did not become ready within 120 s")
                time.sleep(0.3)
            served = []
            for i in range(args.runs + 3):
                data = images[i % len(images)]
                request = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
                request.set_data_from_numpy(np.array([[data]], dtype=object))
                start = time.perf_counter()
                client.infer("damo_yolo", [request])
                if i >= 3:
                    served.append((time.perf_counter() - start) * 1e3)
        finally:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
    raw_p50, raw_p90 = _percentiles(raw)
    srv_p50, srv_p90 = _percentiles(served)
    print(f"images: {len(images)} photographs, model input {size[0]}x{size[1]}, {args.runs} runs each, batch 1")
    print(f"raw detector (onnxruntime): p50 {raw_p50:.2f} ms  p90 {raw_p90:.2f} ms")
    print(f"served end to end (HTTP):   p50 {srv_p50:.2f} ms  p90 {srv_p90:.2f} ms")
    print(f"served / raw at p50: {srv_p50 / raw_p50:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
