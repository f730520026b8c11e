"""Does a served model detect what its checkpoint detects? The GPU smoke check's comparison: the detections a
served repository answers with (its own thresholds and top-K, read from the repository) against onnxruntime
running the checkpoint's ONNX graph in FP32 with the NumPy post-processing at those same settings.

Both directions count: every reference detection must be served (same class, IoU and score within the
tolerances), and every served detection must be in the reference, so a plan that misses objects and one that
invents them both fail. Detections within ``margin`` of the score threshold (or of the K-th score when the
top-K is full) may fall either side of the cut in lower precision and are not compared. A comparison over too
few detections fails instead of passing on nothing. The report names who decoded the served images (OpenCV,
or DALI and where it decoded JPEGs: ``ServingConfig.decoding``, read back from the served repository), so a
failure can be traced to the decoder or to the plan (re-export with ``--dali-decode cpu`` or ``cuda``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..contract import ServingConfig
from ..postprocess import box_iou, postprocess

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes [n, 4] xyxy in original pixels, scores, classes


@dataclass(frozen=True)
class Tolerance:
    min_iou: float = 0.9
    score_tol: float = 0.03
    min_found: float = 0.95  # share of compared detections that must match, in each direction
    min_compared: int = 50  # fewer compared reference detections is a failure, not a pass
    margin: float = 0.05  # around the score threshold and the K-th score


FP16 = Tolerance()
INT8 = Tolerance(min_iou=0.8, score_tol=0.1, min_found=0.9)  # INT8 plan against the same Q/DQ graph on the CPU


@dataclass(frozen=True)
class Agreement:
    compared: int  # reference detections away from the cut
    found: int  # of those, served
    served_compared: int  # served detections away from the cut
    served_found: int  # of those, in the reference
    decoding: str = ""  # who decoded the served images (ServingConfig.decoding), when known

    def failures(self, tol: Tolerance) -> list[str]:
        problems = []
        if self.compared < tol.min_compared:
            problems.append(f"only {self.compared} reference detections were compared (at least {tol.min_compared} "
                            f"needed): use images on which the checkpoint detects objects")
        if self.found < tol.min_found * self.compared:
            problems.append(f"{self.found}/{self.compared} reference detections served (need {tol.min_found:.0%})")
        if self.served_found < tol.min_found * self.served_compared:
            problems.append(f"{self.served_found}/{self.served_compared} served detections are in the reference "
                            f"(need {tol.min_found:.0%})")
        return problems

    def __str__(self) -> str:
        decoded = f"; images decoded by {self.decoding}" if self.decoding else ""
        return (f"{self.found}/{self.compared} reference detections served, {self.served_found}/"
                f"{self.served_compared} served detections in the reference{decoded}")


def _matched(dets: Detections, floor: float, other: Detections, tol: Tolerance) -> tuple[int, int]:
    (boxes, scores, classes), (oboxes, oscores, oclasses) = dets, other
    compared = found = 0
    for box, score, cls in zip(boxes, scores, classes):
        if score < floor:
            continue
        compared += 1
        same = (oclasses == cls) & (np.abs(oscores - score) <= tol.score_tol)
        found += bool(same.any() and (box_iou(box, oboxes[same]) >= tol.min_iou).any())
    return compared, found


def compare(served: Sequence[Detections], reference: Sequence[Detections], settings: ServingConfig,
            tol: Tolerance) -> Agreement:
    if len(served) != len(reference):
        raise ValueError(f"{len(served)} served answers for {len(reference)} images")
    totals = np.zeros(4, int)
    for got, want in zip(served, reference):
        floor = settings.score_threshold + tol.margin
        for dets in (got, want):  # a full top-K cuts at its last score
            if len(dets[1]) >= settings.max_detections:
                floor = max(floor, float(np.min(dets[1])) + tol.margin)
        totals += (*_matched(want, floor, got, tol), *_matched(got, floor, want, tol))
    compared, found, served_compared, served_found = (int(v) for v in totals)
    return Agreement(compared, found, served_compared, served_found)


def reference_detections(onnx_path: Path, datas: Sequence[bytes], serving: ServingConfig) -> list[Detections]:
    """onnxruntime on the CPU + the NumPy post-processing at the served settings: what a plan must reproduce."""
    import onnxruntime as ort

    from .. import contract as C
    from ..data.preprocess import decode_image, preprocess
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = []
    for data in datas:
        chw, info = preprocess(decode_image(data), serving.input_size, serving.resize, serving.pad_value)
        scores, boxes = session.run([C.MODEL_SCORES.name, C.MODEL_BOXES.name], {C.MODEL_INPUT.name: chw[None]})
        b, s, c = postprocess(scores[0], boxes[0], serving.score_threshold, serving.iou_threshold,
                              serving.max_detections)
        out.append((info.to_original(b), s, c))
    return out


def served_detections(url: str, model: str, datas: Sequence[bytes]) -> tuple[list[Detections], ServingConfig]:
    """What the served model answers at its own defaults, and its serving configuration."""
    from damo_client import DamoClient
    with DamoClient(url, model=model, timeout=300.0) as client:
        serving = client.connect().serving
        answers = client.detect_batch(list(datas))
    if serving is None:
        raise ValueError(f"model {model!r} states no serving configuration: re-export it with damo-export")
    return as_arrays(answers), serving


def as_arrays(per_image) -> list[Detections]:
    """The SDK's detections (a list of Detection per image) as (boxes, scores, classes) arrays per image."""
    return [(np.array([d.box for d in dets], np.float32).reshape(-1, 4), np.array([d.score for d in dets]),
             np.array([d.class_id for d in dets])) for dets in per_image]


def check_served(url: str, model: str, onnx_path: Path, datas: Sequence[bytes], tol: Tolerance = FP16,
                 serving: Optional[ServingConfig] = None) -> Agreement:
    """Serve ``datas`` through ``model`` at ``url`` and compare with onnxruntime on ``onnx_path`` at the
    model's own serving configuration (or ``serving``); the result names the served model's decoder."""
    served, stated = served_detections(url, model, datas)
    serving = serving or stated
    result = compare(served, reference_detections(onnx_path, datas, serving), serving, tol)
    return replace(result, decoding=stated.decoding)
