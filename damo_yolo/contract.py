"""The serving contract, defined once: the tensors of the Triton ensemble and of the steps inside it, and what
a served model is configured with (``ServingConfig``: its defaults and the valid range of every threshold).
Pure Python (no numpy, no torch): export (the repository and ONNX/TensorRT graphs), the Triton python-backend
models and the client all import it.

    client ──IMAGE [1] BYTES, or [-1] UINT8 before the DALI backend, or (CPU target) PIXELS [-1, -1, 3] UINT8
             (+ SCORE_THRESHOLD, IOU_THRESHOLD [1] FP32, optional)──► ensemble
      preprocess:  IMAGE → images [3, H, W] FP32, SCALE [2] FP32, ORIG_SIZE [2] INT32
      CPU target:
        detector:    images → scores [N, C], boxes [N, 4]     (the ONNX graph in onnxruntime or OpenVINO)
        postprocess: raw_scores, raw_boxes, SCALE, ORIG_SIZE (+ thresholds) → the ensemble's outputs
      GPU target (NMS inside the TensorRT plan, EfficientNMS_TRT):
        detector:    images → num_dets [1], det_boxes [K, 4], det_scores [K], det_classes [K]
        map-back:    num_dets, det_*, SCALE, ORIG_SIZE (+ thresholds) → the ensemble's outputs
    ensemble ──► num_detections [1] INT32, boxes [K, 4] FP32, scores [K] FP32, classes [K] INT32 ──► client

Dims exclude the batch dimension (every model batches); "H", "W", "N", "C", "K" are filled in by export.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Optional, Union

Dim = Union[int, str]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # Triton's datatype: BYTES, FP32, INT32
    dims: tuple[Dim, ...]
    optional: bool = False

    @property
    def config_type(self) -> str:
        """The ``data_type`` of a config.pbtxt (BYTES is TYPE_STRING there)."""
        return "TYPE_STRING" if self.datatype == "BYTES" else f"TYPE_{self.datatype}"

    def shape(self, **sizes: int) -> list[int]:
        """The dims with the symbolic ones given, e.g. ``shape(H=416, W=416)``."""
        return [sizes[d] if isinstance(d, str) else d for d in self.dims]


# The ensemble: what every client relies on.
IMAGE = TensorSpec("IMAGE", "BYTES", (1,))  # one encoded image (JPEG, PNG, ...) per batch item
# The same input where Triton's DALI backend preprocesses (the GPU target): it takes no BYTES, so each image is
# its file's bytes as UINT8, zero-padded to the longest image of the request (decoders stop at the image's end).
IMAGE_ENCODED = TensorSpec("IMAGE", "UINT8", (-1,))
# The CPU target's other image input: one decoded image, BGR uint8 [H, W, 3] per batch item (a video frame the
# client has decoded already: no JPEG encode and decode on the way). A request gives IMAGE or PIXELS.
PIXELS = TensorSpec("PIXELS", "UINT8", (-1, -1, 3), optional=True)
SCORE_THRESHOLD = TensorSpec("SCORE_THRESHOLD", "FP32", (1,), optional=True)
IOU_THRESHOLD = TensorSpec("IOU_THRESHOLD", "FP32", (1,), optional=True)
NUM_DETECTIONS = TensorSpec("num_detections", "INT32", (1,))
BOXES = TensorSpec("boxes", "FP32", ("K", 4))  # x1, y1, x2, y2 in original image pixels
SCORES = TensorSpec("scores", "FP32", ("K",))
CLASSES = TensorSpec("classes", "INT32", ("K",))  # 0-based; names in labels.txt and the class_names parameter
ENSEMBLE_INPUTS = (IMAGE, SCORE_THRESHOLD, IOU_THRESHOLD)
ENSEMBLE_OUTPUTS = (NUM_DETECTIONS, BOXES, SCORES, CLASSES)

# Inside the ensemble. The detector's names are the ONNX graph's (and so the TensorRT plan's), on every target.
MODEL_INPUT = TensorSpec("images", "FP32", (3, "H", "W"))  # RGB, 0-255, no mean/std
SCALE = TensorSpec("SCALE", "FP32", (2,))  # (scale_y, scale_x): input pixels = original pixels · scale
ORIG_SIZE = TensorSpec("ORIG_SIZE", "INT32", (2,))  # (H, W) of the decoded image
MODEL_SCORES = TensorSpec("scores", "FP32", ("N", "C"))  # sigmoid class scores of the N priors
MODEL_BOXES = TensorSpec("boxes", "FP32", ("N", 4))  # x1, y1, x2, y2 in input pixels
PREPROCESS_OUTPUTS = (MODEL_INPUT, SCALE, ORIG_SIZE)

# The end2end detector (the GPU target's plan): the fused model followed by EfficientNMS_TRT, boxes in input pixels.
DET_NUM = TensorSpec("num_dets", "INT32", (1,))
DET_BOXES = TensorSpec("det_boxes", "FP32", ("K", 4))
DET_SCORES = TensorSpec("det_scores", "FP32", ("K",))
DET_CLASSES = TensorSpec("det_classes", "INT32", ("K",))
END2END_OUTPUTS = (DET_NUM, DET_BOXES, DET_SCORES, DET_CLASSES)
MAPBACK_INPUTS = END2END_OUTPUTS + (SCALE, ORIG_SIZE, SCORE_THRESHOLD, IOU_THRESHOLD)

# Detection defaults. K: at most this many detections per image, as the reference keeps for evaluation.
MAX_DETECTIONS = 500

# What a served repository answers when a request sets no threshold (damo-export's defaults; the checkpoint's
# evaluation thresholds, 0.03 and 500 boxes, would answer a photograph with hundreds of low-score boxes): the
# threshold of best F1 on the synthetic val set (perf/results/thresholds.md), and COCO's maxDets.
SERVING_SCORE_THRESHOLD = 0.5
SERVING_MAX_DETECTIONS = 100
DEFAULT_IOU_THRESHOLD = 0.65  # the reference's NMS IoU, every variant
# Served images above this many pixels are refused from their header, before decoding: 150 MP (a 12,000 x 12,500
# photograph, 450 MB decoded); damo-export --max-pixels sets another, sized with the pod's memory limit
MAX_PIXELS = 150_000_000
MODEL_FILE = "model.onnx"  # the CPU target's detector graph in its version folder
RESIZE_MODES = ("stretch", "letterbox")
DECODERS = ("opencv", "dali")  # decode + resize with OpenCV, or NVIDIA DALI (CPU operators, or the GPU backend)
# where the GPU target's DALI decodes JPEGs: DALI's default (the GPU's hardware JPEG decoder where it has one, else
# nvJPEG on CUDA), nvJPEG on CUDA only, or the CPU with the pixels moved to the GPU (damo_yolo.serving.dali_preprocess)
DALI_DECODE_PATHS = ("auto", "cuda", "cpu")
PRECISIONS = ("fp32", "fp16", "int8")
RUNTIMES = ("onnxruntime", "openvino")  # the CPU target's detector runtime (damo_yolo.serving.runtimes)
IOU_MATCH = 1e-6  # an IoU threshold this close to the plan's is the plan's


@dataclass(frozen=True)
class Interval:
    """A range of valid values; ``contains`` and ``check`` take a number or a numpy array (elementwise; NaN is
    outside every interval)."""
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def contains(self, values: Any) -> Any:
        above = values > self.low if self.low_open else values >= self.low
        below = values < self.high if self.high_open else values <= self.high
        return above & below

    def check(self, name: str, values: Any) -> None:
        """ValueError naming ``name`` and the first value outside."""
        inside = self.contains(values)
        if hasattr(inside, "all"):  # an array
            if not inside.all():
                bad = values[~inside].reshape(-1)[0]
                raise ValueError(f"{name} must be in {self}, got {bad}")
        elif not inside:
            raise ValueError(f"{name} must be in {self}, got {values}")


SCORE_RANGE = Interval(0.0, 1.0, high_open=True)  # a box is kept when its score is above the threshold
IOU_RANGE = Interval(0.0, 1.0, low_open=True)
MAX_DETECTIONS_RANGE = Interval(1, 4096)  # EfficientNMS_TRT keeps at most 4096 boxes


def _choice(name: str, value: str, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose {' or '.join(allowed)}")


@dataclass(frozen=True)
class ServingConfig:
    """What a served model is configured with, written once into each model's config.pbtxt parameters
    (``to_parameters``) and read back by the python-backend models, the validator, the benchmark and the client
    (``from_parameters``); ``to_json``/``from_json`` are its JSON form. Invalid values raise ValueError."""
    input_size: tuple[int, int]  # (H, W) of the detector's input
    class_names: tuple[str, ...]
    score_threshold: float = SERVING_SCORE_THRESHOLD  # served defaults, when a request sets no threshold
    iou_threshold: float = DEFAULT_IOU_THRESHOLD
    max_detections: int = SERVING_MAX_DETECTIONS  # K
    # GPU target: the NMS inside the TensorRT plan keeps scores above this (requests may not go lower) and runs at
    # iou_threshold (requests may not change it); None where NMS runs per request (CPU target)
    plan_score_threshold: Optional[float] = None
    resize: str = "stretch"
    pad_value: float = 0.0
    precision: str = "fp32"
    decoder: str = "opencv"
    dali_decode: str = "auto"  # where DALI decodes JPEGs (DALI_DECODE_PATHS); recorded where DALI decodes
    threads: int = 0  # the detector's and decoder's threads (0: the pod's CPU limit)
    runtime: str = "onnxruntime"  # the CPU target's detector runtime (RUNTIMES)
    allow_spinning: bool = False  # onnxruntime's idle threads spin instead of sleeping
    reduce_range: bool = False  # INT8 weights in 7 bits: for CPUs without VNNI (damo_yolo.serving.quantize)
    max_pixels: int = MAX_PIXELS  # larger images are refused from their header (0: no limit)
    model_file: str = MODEL_FILE

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the types once, here
        set_(self, "input_size", tuple(int(v) for v in self.input_size))
        set_(self, "class_names", tuple(str(v) for v in self.class_names))
        for name, kind in (("score_threshold", float), ("iou_threshold", float), ("max_detections", int),
                           ("pad_value", float), ("threads", int), ("max_pixels", int)):
            set_(self, name, kind(getattr(self, name)))
        if self.plan_score_threshold is not None:
            set_(self, "plan_score_threshold", float(self.plan_score_threshold))
        if len(self.input_size) != 2 or min(self.input_size) < 32 or any(v % 32 for v in self.input_size):
            raise ValueError(f"input_size must be two multiples of 32, got {self.input_size}")
        if not self.class_names:
            raise ValueError("class_names must not be empty")
        SCORE_RANGE.check("score_threshold", self.score_threshold)
        IOU_RANGE.check("iou_threshold", self.iou_threshold)
        MAX_DETECTIONS_RANGE.check("max_detections", self.max_detections)
        if self.plan_score_threshold is not None:
            SCORE_RANGE.check("plan_score_threshold", self.plan_score_threshold)
            if self.score_threshold < self.plan_score_threshold:
                raise ValueError(f"score threshold {self.score_threshold:g} is below {self.plan_score_threshold:g}, "
                                 f"the threshold of the NMS inside the TensorRT plan: lower scores were never kept "
                                 f"(re-export with --score-threshold {self.score_threshold:g})")
        _choice("resize", self.resize, RESIZE_MODES)
        _choice("decoder", self.decoder, DECODERS)
        _choice("dali_decode", self.dali_decode, DALI_DECODE_PATHS)
        if self.dali_decode != "auto" and self.decoder != "dali":
            raise ValueError(f"dali_decode {self.dali_decode!r} needs DALI decoding, but the decoder is {self.decoder}")
        _choice("precision", self.precision, PRECISIONS)
        _choice("runtime", self.runtime, RUNTIMES)
        if self.runtime != "onnxruntime" and self.plan_score_threshold is not None:
            raise ValueError(f"runtime {self.runtime!r} runs the CPU target's detector; the GPU target's is a plan")
        if self.threads < 0 or self.max_pixels < 0:
            raise ValueError("threads and max_pixels must be >= 0 (0: the pod's CPU limit / no limit)")
        if not self.model_file or "/" in self.model_file:
            raise ValueError(f"model_file must be a file name, got {self.model_file!r}")

    def check_thresholds(self, score: Any, iou: Any) -> None:
        """A request's thresholds (numbers or arrays): in range, and, where the NMS runs inside the plan, what
        the plan can honour. ValueError names the input."""
        SCORE_RANGE.check(SCORE_THRESHOLD.name, score)
        IOU_RANGE.check(IOU_THRESHOLD.name, iou)
        if self.plan_score_threshold is None:
            return
        low = score < self.plan_score_threshold
        if low.any() if hasattr(low, "any") else low:
            least = float(score.min()) if hasattr(score, "min") else float(score)
            raise ValueError(f"{SCORE_THRESHOLD.name} {least:g} is below {self.plan_score_threshold:g}, the "
                             f"threshold of the NMS inside this repository's TensorRT plan: lower scores were never "
                             f"kept (re-export with --score-threshold {least:g})")
        other = abs(iou - self.iou_threshold) > IOU_MATCH
        if other.any() if hasattr(other, "any") else other:
            value = float(iou[other].reshape(-1)[0]) if hasattr(other, "any") else float(iou)
            raise ValueError(f"{IOU_THRESHOLD.name} {value:g} cannot be honoured: this repository's NMS runs inside "
                             f"its TensorRT plan at IoU {self.iou_threshold:g} (re-export with --iou-threshold "
                             f"{value:g})")

    def summary(self) -> str:
        """One line for people: the served defaults and what the model takes."""
        plan = "" if self.plan_score_threshold is None else f" (the plan's NMS keeps > {self.plan_score_threshold:g})"
        return (f"score > {self.score_threshold:g}{plan}, NMS IoU {self.iou_threshold:g}, "
                f"at most {self.max_detections} boxes per image; input {self.input_size[0]}x{self.input_size[1]} "
                f"({self.resize}), {self.precision}, {self.decoding} decoding, {len(self.class_names)} classes")

    @property
    def decoding(self) -> str:
        """Who decodes the images: opencv, or dali and where it decodes JPEGs (``dali (JPEG: cuda)``)."""
        return f"dali (JPEG: {self.dali_decode})" if self.decoder == "dali" else self.decoder

    def with_defaults(self, score_threshold: Optional[float] = None,
                      iou_threshold: Optional[float] = None) -> "ServingConfig":
        """The same model served with other default thresholds (those not given are kept)."""
        score = self.score_threshold if score_threshold is None else score_threshold
        iou = self.iou_threshold if iou_threshold is None else iou_threshold
        self.check_thresholds(score, iou)
        return replace(self, score_threshold=score, iou_threshold=iou)

    def to_json(self) -> dict:
        """Every setting; ``dali_decode`` only where DALI decodes (elsewhere it is "auto", and repositories written
        before it stay what an export writes)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)
                if f.name != "dali_decode" or self.decoder == "dali"}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> "ServingConfig":
        """From ``to_json``'s form; keys that are not settings are ignored, missing ones take their defaults."""
        names = {f.name for f in fields(cls)}
        missing = [n for n in ("input_size", "class_names") if n not in record]
        if missing:
            raise ValueError(f"the serving configuration lacks {', '.join(missing)}: re-export the model with "
                             f"damo-export")
        return cls(**{k: v for k, v in record.items() if k in names})

    def to_parameters(self) -> dict[str, str]:
        """config.pbtxt parameters: strings as they are, everything else as JSON."""
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.to_json().items()}

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> "ServingConfig":
        texts = {f.name for f in fields(cls) if f.type == "str"}
        try:
            return cls.from_json({k: v if k in texts else json.loads(v) for k, v in params.items()
                                  if k in {f.name for f in fields(cls)}})
        except json.JSONDecodeError as exc:
            raise ValueError(f"a serving parameter is not JSON ({exc.doc!r}): re-export the model") from None
