"""The GPU target end to end, on a GPU host inside the serving container (bash scripts/gpu_smoke.sh CHECKPOINT
[IMAGES]): plans of the checkpoint (FP16, and INT8 from its Q/DQ ONNX) and of T (the official layout, shared
fixture weights; FP16) exported with NMS inside, served by the container's tritonserver, and perf_analyzer
latency and throughput at concurrency 1 and 8.

What is compared (damo_yolo/serving/agreement.py): the checkpoint's repositories as they are served — their own
score threshold, NMS IoU and top-K — against onnxruntime (CPU) on the same graph at those settings: the FP32
ONNX for the FP16 plan, the Q/DQ ONNX for the INT8 plan. On IMAGES (default: the synthetic val images
`damo-synthetic --val 200 --size 320 --seed 0`, on which the synthetic demo checkpoint detects; for a COCO
checkpoint give a folder of photographs). T's random weights detect nothing meaningful: it is served for
latency and checked to answer within the contract.

Under the smoke command (DAMO_GPU_SMOKE=1) a missing checkpoint, fixture, TensorRT or GPU fails the test;
elsewhere it is skipped with the command to run.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from damo_yolo.serving import agreement

COMMAND = "bash scripts/gpu_smoke.sh CHECKPOINT [IMAGES]"
SMOKE = os.environ.get("DAMO_GPU_SMOKE") == "1"
ROOT = Path(__file__).resolve().parents[2]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _missing(what: str):
    """Under the smoke command nothing may be missing; elsewhere the test does not apply."""
    if SMOKE:
        pytest.fail(f"gpu smoke: {what}")
    pytest.skip(f"{what}: run `{COMMAND}` on a GPU host")


def _gpu():
    from damo_yolo.serving.tensorrt_builder import TensorRTUnavailable, gpu_info, import_tensorrt
    try:
        import_tensorrt()
        return gpu_info()
    except TensorRTUnavailable as exc:
        _missing(f"needs an NVIDIA GPU with TensorRT ({str(exc).splitlines()[0][:160]})")


def _images(tmp_path: Path) -> list[Path]:
    folder = os.environ.get("DAMO_GPU_IMAGES")
    if not folder:  # the synthetic val set the demo checkpoint was trained beside
        shared = Path(os.environ.get("DAMO_SHARED_DIR", ROOT.parent / "shared"))
        subprocess.run([sys.executable, "-m", "damo_yolo.data.synthetic", "--out", str(tmp_path / "synthetic"),
                        "--train", "64", "--val", "200", "--size", "320", "--seed", "0",
                        "--backgrounds", str(shared / "data" / "images")], check=True)
        folder = tmp_path / "synthetic" / "val"
    images = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        _missing(f"no images in {folder}")
    return images


@pytest.mark.gpu
def test_plans_serve_what_the_model_detects(tmp_path):
    gpu = _gpu()
    checkpoint = os.environ.get("DAMO_GPU_CHECKPOINT")
    if not checkpoint or not Path(checkpoint).is_file():
        _missing(f"set DAMO_GPU_CHECKPOINT to a checkpoint file (got {checkpoint!r})")
    shared = Path(os.environ.get("DAMO_SHARED_DIR", ROOT.parent / "shared"))
    t_weights = shared / "fixtures" / "official" / "T_weights.pth"
    if not t_weights.is_file():
        _missing(f"the shared fixture {t_weights} is missing (set DAMO_SHARED_DIR)")

    from damo_client.perf import format_rows, run_perf_analyzer
    from damo_yolo.models import load_model
    from damo_yolo.serving.onnx_export import export_onnx
    from damo_yolo.serving.quantize import quantize_onnx
    from damo_yolo.serving.tritonserver import LocalServer
    from damo_yolo.tools.export import export_repository
    images = _images(tmp_path)
    datas = [p.read_bytes() for p in images]
    calibration = Path(os.environ.get("DAMO_GPU_CALIBRATION", images[0].parent.parent / "train"
                                      if (images[0].parent.parent / "train").is_dir() else images[0].parent))
    model, meta = load_model(checkpoint)
    size = tuple(meta.input_size)
    fp32 = export_onnx(model, tmp_path / "fp32.onnx", input_size=size)
    qdq = quantize_onnx(fp32, tmp_path / "int8.onnx", calibration, size, meta.resize, meta.pad_value)

    repo = tmp_path / "triton_models"
    export_repository(Path(checkpoint), repo, target="gpu", name="damo_yolo", precision="fp16")
    export_repository(Path(checkpoint), repo, target="gpu", name="damo_yolo_int8", precision="int8",
                      calibration_images=calibration)
    export_repository(t_weights, repo, target="gpu", name="damo_yolo_t", precision="fp16")
    failures = []
    with LocalServer(repo, tmp_path / "server.log", ready_timeout=600) as server:
        for name, onnx_path, tol in (("damo_yolo", fp32, agreement.FP16), ("damo_yolo_int8", qdq, agreement.INT8)):
            result = agreement.check_served(server.http_url, name, onnx_path, datas, tol)
            problems = result.failures(tol)
            print(f"\n{name} on {gpu.name} (compute {gpu.compute_capability}): {result} — "
                  f"{'PASS' if not problems else 'FAIL: ' + '; '.join(problems)}")
            failures += [f"{name}: {p}" for p in problems]
        served_t, settings_t = agreement.served_detections(server.http_url, "damo_yolo_t", datas[:8])
        if any(len(boxes) > settings_t.max_detections for boxes, _, _ in served_t):
            failures.append("damo_yolo_t: more detections than its top-K")
        for name in ("damo_yolo", "damo_yolo_int8", "damo_yolo_t"):
            rows = run_perf_analyzer(datas[:16], server.http_url, model=name, concurrency="1:8:7",
                                     measurement_interval_ms=3000)
            print(f"\n{name} perf_analyzer\n{format_rows(rows)}")
    assert not failures, f"plans differ from the model beyond the tolerances: {failures}"


def test_smoke_command_names_the_pinned_container_and_its_usage():
    """What runs on any host of the smoke path (no GPU claimed): the command parses its arguments, runs the
    pinned container with python3 and makes the test fail rather than skip."""
    from damo_yolo.serving import platform
    script = (ROOT / "scripts" / "gpu_smoke.sh").read_text()
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_smoke.sh")], capture_output=True, text=True)
    assert run.returncode == 2 and "usage: bash scripts/gpu_smoke.sh CHECKPOINT [IMAGES]" in run.stderr
    image = subprocess.run(["sed", "-n", 's/^CONTAINER = "\\(.*\\)"/\\1/p',
                            str(ROOT / "damo_yolo/serving/platform.py")],
                           capture_output=True, text=True).stdout.strip()
    assert image == platform.CONTAINER
    assert "DAMO_TRITONSERVER=/opt/tritonserver/bin/tritonserver" in script and "DAMO_GPU_SMOKE=1" in script
    commands = [line.split()[0] for line in script.splitlines() if line.strip().startswith(("python", "pip"))]
    assert commands and all(c == "python3" for c in commands), commands


def test_the_smoke_test_fails_instead_of_skipping_under_the_smoke_command(tmp_path):
    """No GPU here: under DAMO_GPU_SMOKE=1 the GPU test must fail, naming what is missing."""
    env = dict(os.environ, DAMO_GPU_SMOKE="1", DAMO_GPU_CHECKPOINT=str(tmp_path / "none.pth"))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", __file__],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    assert run.returncode == 1 and "1 failed" in run.stdout, run.stdout[-2000:]
    assert "gpu smoke: needs an NVIDIA GPU with TensorRT" in run.stdout
