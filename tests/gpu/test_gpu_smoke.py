"""The GPU target end to end, on a GPU host inside the serving container (bash scripts/gpu_smoke.sh CHECKPOINT):
FP16 plans of Ns (the given checkpoint) and T (the official layout, shared fixture weights) exported with
NMS inside, served by the container's tritonserver, their detections on the shared photographs compared
with onnxruntime + the NumPy post-processing of the same checkpoint, and perf_analyzer latency and
throughput at concurrency 1 and 8. Skipped, with the command to run, where there is no GPU.

Tolerances (FP16 plan against the FP32 model): every reference detection scoring >= 0.3 must be found with
the same class, IoU >= 0.9 and a score within 0.03; at least 95 % of them, per model."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from damo_yolo.serving.tensorrt_builder import TensorRTUnavailable, gpu_info

COMMAND = "bash scripts/gpu_smoke.sh CHECKPOINT"
MIN_SCORE, MIN_IOU, SCORE_TOL, MIN_FOUND = 0.3, 0.9, 0.03, 0.95


def _gpu_or_skip():
    try:
        import tensorrt  # noqa: F401
        return gpu_info()
    except (ImportError, TensorRTUnavailable) as exc:
        pytest.skip(f"needs an NVIDIA GPU with TensorRT ({str(exc).splitlines()[0][:120]}): run `{COMMAND}` on a "
                    f"GPU host")


def _iou(a, b):
    lt, rb = np.maximum(a[:2], b[:, :2]), np.minimum(a[2:], b[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def _reference(checkpoint, datas):
    """onnxruntime (FP32, CPU) + the NumPy post-processing: what the plan must reproduce."""
    import onnxruntime as ort

    from damo_yolo import contract as C
    from damo_yolo.data.preprocess import decode_image, preprocess
    from damo_yolo.serving.onnx_export import export_onnx
    from damo_yolo.models import load_model
    from damo_yolo.postprocess import postprocess
    model, meta = load_model(checkpoint)
    path = export_onnx(model, Path(os.environ.get("TMPDIR", "/tmp")) / f"ref-{meta.variant}.onnx",
                       input_size=tuple(meta.input_size))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = []
    for data in datas:
        chw, info = preprocess(decode_image(data), tuple(meta.input_size), meta.resize, meta.pad_value)
        scores, boxes = session.run([C.MODEL_SCORES.name, C.MODEL_BOXES.name], {C.MODEL_INPUT.name: chw[None]})
        b, s, c = postprocess(scores[0], boxes[0], meta.score_threshold, meta.iou_threshold, meta.max_detections)
        out.append((info.to_original(b), s, c))
    return out


def _agreement(served, reference) -> tuple[int, int]:
    found = total = 0
    for (sb, ss, sc), (rb, rs, rc) in zip(served, reference):
        for box, score, cls in zip(rb, rs, rc):
            if score < MIN_SCORE:
                continue
            total += 1
            same = (sc == cls) & (np.abs(ss - score) <= SCORE_TOL)
            found += bool(same.any() and (_iou(box, sb[same]) >= MIN_IOU).any())
    return found, total


@pytest.mark.gpu
def test_fp16_plans_serve_what_the_model_detects(tmp_path, shared_dir, sample_images):
    gpu = _gpu_or_skip()
    checkpoint = os.environ.get("DAMO_GPU_CHECKPOINT")
    if not checkpoint:
        pytest.skip(f"set DAMO_GPU_CHECKPOINT (the smoke command does: `{COMMAND}`)")
    from damo_client import DamoClient
    from damo_client.perf import format_rows, run_perf_analyzer
    from damo_yolo.serving.tritonserver import LocalServer
    from damo_yolo.tools.export import export_repository
    repo = tmp_path / "triton_models"
    models = {"damo_yolo": Path(checkpoint), "damo_yolo_t": shared_dir / "fixtures" / "official" / "T_weights.pth"}
    for name, ckpt in models.items():
        export_repository(ckpt, repo, variant=None, target="gpu", name=name, precision="fp16")
    datas = [p.read_bytes() for p in sample_images]
    failures = []
    with LocalServer(repo, tmp_path / "server.log", ready_timeout=600) as server:
        for name, ckpt in models.items():
            with DamoClient(server.http_url, model=name) as client:
                served = [(np.array([d.box for d in dets]).reshape(-1, 4), np.array([d.score for d in dets]),
                           np.array([d.class_id for d in dets])) for dets in client.detect_batch(datas)]
            found, total = _agreement(served, _reference(ckpt, datas))
            rows = run_perf_analyzer(datas, server.http_url, model=name, concurrency="1:8:7",
                                     measurement_interval_ms=3000)
            print(f"\n{name} on {gpu.name} (compute {gpu.compute_capability}): {found}/{total} reference "
                  f"detections served (need {MIN_FOUND:.0%})\n{format_rows(rows)}")
            if total and found < MIN_FOUND * total:
                failures.append(f"{name}: {found}/{total}")
    assert not failures, f"FP16 plans differ from the model beyond the tolerances: {failures}"


def test_smoke_command_names_the_pinned_container_and_its_usage():
    """What runs on any host of the smoke path (no GPU claimed): the command parses its arguments and
    runs the pinned container."""
    import subprocess

    from damo_yolo.serving import platform
    root = Path(__file__).resolve().parents[2]
    script = (root / "scripts" / "gpu_smoke.sh").read_text()
    run = subprocess.run(["bash", str(root / "scripts" / "gpu_smoke.sh")], capture_output=True, text=True)
    assert run.returncode == 2 and "usage: bash scripts/gpu_smoke.sh CHECKPOINT" in run.stderr
    image = subprocess.run(["sed", "-n", 's/^CONTAINER = "\\(.*\\)"/\\1/p', str(root / "damo_yolo/serving/platform.py")],
                           capture_output=True, text=True).stdout.strip()
    assert image == platform.CONTAINER and "DAMO_TRITONSERVER=/opt/tritonserver/bin/tritonserver" in script
