"""The real tritonserver for tests (damo_yolo's LocalServer, failing the test with the server's log), and the
comparisons the serving tests share."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from damo_yolo import contract as C
from damo_yolo.serving.tritonserver import LocalServer

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"


def start_server(repo: Path, log_path: Path, **kwargs) -> LocalServer:
    try:
        return LocalServer(repo, log_path, **kwargs).start()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@contextlib.contextmanager
def running_server(repo: Path, log_path: Path, **kwargs):
    server = start_server(repo, log_path, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def start_entrypoint(log: Path, ports: tuple[int, int, int], address: str = "127.0.0.1",
                     **environment: str) -> subprocess.Popen:
    """The images' entrypoint on this host, serving triton_models/ with the bundled tritonserver on ``address`` at
    ``ports`` (HTTP, gRPC, metrics), its output in ``log``; ``environment`` adds to its environment (the bundled
    server serves loopback addresses only)."""
    http, grpc, metrics = ports
    env = {**os.environ, "MODEL_REPOSITORY": str(ROOT / "triton_models"), "LISTEN_ADDRESS": address,
           "HTTP_PORT": str(http), "GRPC_PORT": str(grpc), "METRICS_PORT": str(metrics),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **environment}
    with open(log, "w") as out:
        return subprocess.Popen(["bash", str(ENTRYPOINT)], env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(port: int, proc: subprocess.Popen, log: Path, what: str, timeout: float = 180,
               host: str = "127.0.0.1") -> None:
    """Until the server ``proc`` started (its output in ``log``) answers ready at ``host:port``; the test fails with
    the log's tail when it exits or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if urllib.request.urlopen(f"http://{host}:{port}/v2/health/ready", timeout=2).status == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{what} did not get ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def local_detections(model, meta, data: bytes, score_threshold=None, chw_info=None):
    """The PyTorch model's detections on encoded image bytes, preprocessed as ``meta`` says (or ``chw_info``)."""
    import torch

    from damo_yolo.data.preprocess import decode_image, preprocess
    from damo_yolo.postprocess import postprocess
    chw, info = chw_info or preprocess(decode_image(data), tuple(meta.input_size), meta.resize, meta.pad_value)
    with torch.inference_mode():
        scores, boxes = model(torch.from_numpy(chw)[None])
    thr = meta.score_threshold if score_threshold is None else score_threshold
    det_boxes, det_scores, det_classes = postprocess(scores[0].numpy(), boxes[0].numpy(), thr, meta.iou_threshold,
                                                     meta.max_detections)
    return info.to_original(det_boxes), det_scores, det_classes


def infer_raw(client, mod, images: list[bytes], score_threshold=None):
    """One request of encoded images straight through tritonclient → [(boxes, scores, classes)] per image."""
    inputs = [mod.InferInput("IMAGE", [len(images), 1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([[d] for d in images], dtype=object))
    if score_threshold is not None:
        thr = mod.InferInput("SCORE_THRESHOLD", [len(images), 1], "FP32")
        thr.set_data_from_numpy(np.full((len(images), 1), score_threshold, np.float32))
        inputs.append(thr)
    result = client.infer("damo_yolo", inputs)
    num = result.as_numpy("num_detections")[:, 0]
    return [(result.as_numpy("boxes")[i, :n], result.as_numpy("scores")[i, :n], result.as_numpy("classes")[i, :n])
            for i, n in enumerate(num)]


def assert_same_detections(served, local, k: int, margin: float = 2e-3) -> int:
    """Same detections, ignoring only those within ``margin`` of the cut-offs (threshold, top-k), where a
    1e-5 difference of score may legitimately decide inclusion. Returns how many were compared."""
    (sb, ss, sc), (lb, ls, lc) = served, local
    floor = max(ss.min() if len(ss) == k else 0.0, ls.min() if len(ls) == k else 0.0) + margin
    for (ab, as_, ac), (bb, bs, bc) in (((sb, ss, sc), (lb, ls, lc)), ((lb, ls, lc), (sb, ss, sc))):
        for box, score, cls in zip(ab, as_, ac):
            if score < floor + (0 if len(ss) < k else margin):
                continue
            close = (bc == cls) & (np.abs(bb - box).max(1) <= 1.0) & (np.abs(bs - score) <= 1e-3)
            assert close.any(), f"no match for class {cls} score {score:.4f} box {box}"
    return int((ss >= floor + margin).sum())


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (the server and its python-backend stubs)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


STAND_INS = Path(__file__).resolve().parent / "stand_ins"
SERVED_DEFAULT = C.SERVING_SCORE_THRESHOLD  # the GPU layout's served default, above the plan's NMS threshold


def write_gpu_layout(repo: Path, name: str, model, meta, defect: str = "") -> None:
    """The GPU target's models of ensemble ``name`` written into ``repo``, the DALI backend and the plan stood in
    for (``defect``: a deliberately wrong plan, see tests/stand_ins/end2end_plan.py)."""
    import shutil

    from tritonclient.grpc import model_config_pb2 as pb

    from damo_yolo.serving.dali_preprocess import serialize_pipeline
    from damo_yolo.serving.onnx_export import export_onnx
    from damo_yolo.serving.repository import RepositorySpec, config_text, parse_config, step_names, write_repository
    from damo_yolo.tools.export import ExportOptions
    h, w = meta.input_size
    # served default 0.5 over a plan whose NMS keeps everything above the checkpoint's 0.03 (as damo-export does)
    serving = ExportOptions(target="gpu", score_threshold=SERVED_DEFAULT,
                            max_detections=meta.max_detections).serving_config(meta)
    assert serving.plan_score_threshold == meta.score_threshold
    spec = RepositorySpec(serving, target="gpu", name=name,
                          # as if its plan had been built with an older TensorRT:
                          extra={"tensorrt": "10.7.0.23", "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9"}})
    num_priors = sum((h // s) * (w // s) for s in model.cfg.strides)
    write_repository(spec, repo, num_priors)  # no plan, no model.dali: stand-ins
    names = step_names(name)

    def stand_in(model_name: str, source: str, **parameters) -> Path:
        model_dir = repo / model_name
        config = parse_config((model_dir / "config.pbtxt").read_text())
        config.platform, config.backend = "", "python"
        config.instance_group[0].kind = config.instance_group[0].KIND_CPU
        for key, value in parameters.items():
            config.parameters[key].string_value = str(value)
        (model_dir / "config.pbtxt").write_text(config_text(config))
        shutil.copy(STAND_INS / source, model_dir / "1" / "model.py")
        return model_dir / "1"

    pre = parse_config((repo / names["preprocess"] / "config.pbtxt").read_text())
    assert pre.backend == "dali" and pre.input[0].data_type == pb.TYPE_UINT8  # what is stood in for
    serialize_pipeline(stand_in(names["preprocess"], "dali_backend.py") / "model.dali", (h, w), meta.resize,
                       meta.pad_value, spec.max_batch_size, device="cpu")
    det = parse_config((repo / names["detector"] / "config.pbtxt").read_text())
    assert det.platform == "tensorrt_plan" and [o.name for o in det.output][0] == "num_dets"
    export_onnx(model, stand_in(names["detector"], "end2end_plan.py", score_threshold=meta.score_threshold,
                                iou_threshold=meta.iou_threshold, max_detections=meta.max_detections,
                                defect=defect) / "model.onnx", input_size=(h, w))
