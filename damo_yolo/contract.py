"""The serving contract, defined once: the tensors of the Triton ensemble and of the steps inside it, and the
detection defaults. Pure Python (no numpy, no torch): export (the repository and ONNX/TensorRT graphs), the
Triton python-backend models and the client all import it.

    client ──IMAGE [1] BYTES, or [-1] UINT8 before the DALI backend (+ SCORE_THRESHOLD, IOU_THRESHOLD [1] FP32,
             optional)──► ensemble
      preprocess:  IMAGE → images [3, H, W] FP32, SCALE [2] FP32, ORIG_SIZE [2] INT32
      CPU target:
        detector:    images → scores [N, C], boxes [N, 4]                (the ONNX graph in onnxruntime)
        postprocess: raw_scores, raw_boxes, SCALE, ORIG_SIZE (+ thresholds) → the ensemble's outputs
      GPU target (NMS inside the TensorRT plan, EfficientNMS_TRT):
        detector:    images → num_dets [1], det_boxes [K, 4], det_scores [K], det_classes [K]
        map-back:    num_dets, det_*, SCALE, ORIG_SIZE (+ thresholds) → the ensemble's outputs
    ensemble ──► num_detections [1] INT32, boxes [K, 4] FP32, scores [K] FP32, classes [K] INT32 ──► client

Dims exclude the batch dimension (every model batches); "H", "W", "N", "C", "K" are filled in by export.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

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
# evaluation thresholds, 0.03 and 500 boxes, would answer a photograph with hundreds of low-score boxes).
# 0.5 is the threshold of best F1 on the synthetic val set (perf/results/thresholds.md: precision 0.967,
# recall 0.891, 4 boxes per image; F1 0.92 or more from 0.45 to 0.5); 100 boxes is COCO's maxDets.
SERVING_SCORE_THRESHOLD = 0.5
SERVING_MAX_DETECTIONS = 100
# Served images above this many pixels are refused from their header, before decoding: 150 MP (a 12,000 x 12,500
# photograph, 450 MB decoded); damo-export --max-pixels sets another, sized with the pod's memory limit
MAX_PIXELS = 150_000_000
