"""The real tritonserver for tests (damo_yolo's LocalServer, failing the test with the server's log), and the
comparisons the serving tests share."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

from damo_yolo.serving.tritonserver import LocalServer


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
