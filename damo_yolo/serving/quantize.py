"""INT8 by explicit quantization: a Q/DQ ONNX of the detector, calibrated on a folder of images on the CPU, laid
out for the runtime that serves it (``LAYOUTS``, made with onnxruntime's static quantizer,
``onnxruntime.quantization``).

``tensorrt`` — the GPU target's: TensorRT builds its INT8 plan from it (no implicit calibrator: TensorRT deprecated
those in 10.1 and removed them in 11). The layout TensorRT's explicit quantization expects:

- symmetric INT8 everywhere (zero points 0), per-output-channel weight scales;
- Q/DQ on the inputs of every Conv (activation and weight), none added on its output, so TensorRT fuses
  Conv + bias + activation between them; a tensor that a Conv shares with other readers (a residual Add, a
  Concat) is read by all of them through the same Q/DQ pair; biases stay float (TensorRT has no INT32
  dequantisation).

onnxruntime on a CPU fuses almost none of that into integer kernels (2 of 91 Convs of Ns, 0 of 77 of T): the rest
runs in float behind Q/DQ round trips, slower than FP32.

``cpu`` — the CPU target's (onnxruntime): the layout onnxruntime's CPU kernels fuse (QLinearConv, QLinearAdd,
QLinearConcat, ...), U8S8:

- activations unsigned INT8 with a zero point (asymmetric), weights signed INT8 with per-output-channel scales —
  the operands of the u8 x s8 dot products of AVX2, AVX-512 VNNI and AMX;
- the outputs of the quantized operators quantized too, so one integer operator feeds the next without a float
  round trip;
- the head (the last convolutions, the distribution softmax and the box decoding) in float: quantizing it costs
  the demo model 5 mAP points, the rest of the network a quarter of one.

On CPUs without VNNI (or AMX) the u8 x s8 products are summed pairwise in 16 bits by AVX2's vpmaddubsw, which
saturates: there the weights keep to 7 bits (``reduce_range``; export chooses it from its host's flags, or as told).

Activation ranges come from the calibration images (their extremes: MinMax), preprocessed as at serving time.
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from ..contract import MODEL_INPUT

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
LAYOUTS = ("tensorrt", "cpu")
TARGET_LAYOUT = {"gpu": "tensorrt", "cpu": "cpu"}  # the export target's runtime → its layout
CPU_OPERATORS = ("Conv", "Add", "Mul", "Sigmoid", "Concat", "MaxPool", "Resize", "Relu")  # quantized in ``cpu``
FLOAT_SCOPE = "/head/"  # ONNX node names of the head (the exporter's module scopes): float in ``cpu``
CALIBRATION_IMAGES = 128  # images calibration reads (the first of the folder, sorted by name)
SENSITIVITY_IMAGES = 8  # validation images each layer's sensitivity to INT8 is measured on


def calibration_files(folder: Union[str, Path], max_images: int = CALIBRATION_IMAGES) -> list[Path]:
    """The images calibration reads: the first ``max_images`` of ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"calibration images: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no calibration images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files[:max_images]


def decoded_images(files: Sequence[Path]) -> Iterator[np.ndarray]:
    """The images of ``files`` that decode, in order (an unreadable file is skipped); ValueError naming the first
    problem when none of them does."""
    from ..data.preprocess import decode_image
    first_problem, decoded = "", False
    for path in files:
        try:
            image = decode_image(path.read_bytes())
        except (OSError, ValueError) as exc:
            first_problem = first_problem or f"{path.name}: {exc}"
            continue
        decoded = True
        yield image
    if files and not decoded:
        raise ValueError(f"none of the {len(files)} image files in {files[0].parent} can be decoded "
                         f"({first_problem})")


def check_calibration_folder(folder: Union[str, Path], max_images: int = CALIBRATION_IMAGES) -> None:
    """Refuse a calibration folder none of whose first ``max_images`` images decodes (ValueError naming the first
    problem); cheap where the first image is good."""
    next(decoded_images(calibration_files(folder, max_images)))


class CalibrationImages:
    """Batches of preprocessed images (float32 NCHW, RGB 0–255, the serving preprocessing) from a folder."""

    def __init__(self, folder: Union[str, Path], input_size: tuple[int, int], resize: str = "stretch",
                 pad_value: float = 0.0, max_images: int = CALIBRATION_IMAGES, batch_size: int = 8):
        if max_images < 1 or batch_size < 1:
            raise ValueError("max_images and batch_size must be at least 1")
        self.files = calibration_files(folder, max_images)
        self.input_size, self.resize, self.pad_value, self.batch_size = input_size, resize, pad_value, batch_size

    def __iter__(self) -> Iterator[np.ndarray]:
        from ..data.preprocess import preprocess
        batch: list[np.ndarray] = []
        for image in decoded_images(self.files):
            batch.append(preprocess(image, self.input_size, self.resize, self.pad_value)[0])
            if len(batch) == self.batch_size:
                yield np.ascontiguousarray(np.stack(batch))
                batch = []
        if batch:
            yield np.ascontiguousarray(np.stack(batch))


class Quantizer:
    """One calibration of a detector graph, quantized in ``layout`` as often as asked (with other layers in float):
    the graph is prepared (shapes inferred) and calibrated once, the ranges kept in a calibration cache."""

    def __init__(self, fp32_path: Union[str, Path], calibration_images: Union[str, Path], input_size: tuple[int, int],
                 resize: str = "stretch", pad_value: float = 0.0, max_images: int = CALIBRATION_IMAGES,
                 layout: str = "tensorrt", workdir: Optional[Path] = None, reduce_range: bool = False):
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process
        if layout not in LAYOUTS:
            raise ValueError(f"unknown INT8 layout {layout!r}: choose {' or '.join(LAYOUTS)}")
        if reduce_range and layout != "cpu":
            raise ValueError("reduce_range is for the cpu layout (onnxruntime's u8 x s8 kernels without VNNI)")
        self.layout, self.reduce_range = layout, reduce_range
        self.images = CalibrationImages(calibration_images, input_size, resize, pad_value, max_images)
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="damo-quantize-")
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepared = self.workdir / "prepared.onnx"  # shapes inferred (symbolically: the batch is dynamic)
        quant_pre_process(str(fp32_path), str(self.prepared), auto_merge=True)
        self.ranges = self.workdir / "ranges.json"  # the calibration cache, made by the first quantize
        self.ranges.unlink(missing_ok=True)
        nodes = onnx.load(str(self.prepared), load_external_data=False).graph.node
        self.head = [n.name for n in nodes if n.name.startswith(FLOAT_SCOPE)] if layout == "cpu" else []
        if layout == "cpu" and not self.head:
            raise ValueError(f"{fp32_path}: no node named {FLOAT_SCOPE}…: not a detector ONNX of damo_yolo's export")
        self.layers = [n.name for n in nodes if n.op_type == "Conv" and n.name not in self.head]
        self.chains = activation_chains(nodes, self.layers)

    def quantize(self, out_path: Union[str, Path], float_layers: Sequence[str] = (),
                 only: Optional[Sequence[str]] = None) -> Path:
        """The Q/DQ graph at ``out_path``: every layer quantized but ``float_layers`` (or only those of ``only``). A
        layer in float is its Conv with its activation (``chains``): weights, output and activation all float."""
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        batches = iter(self.images)

        class Reader(CalibrationDataReader):
            def get_next(self):
                batch = next(batches, None)
                return None if batch is None else {MODEL_INPUT.name: batch}

        if self.layout == "tensorrt":
            options: dict = dict(
                activation_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                               "OpTypesToExcludeOutputQuantization": ["Conv"]})
        else:
            options = dict(activation_type=QuantType.QUInt8, op_types_to_quantize=list(CPU_OPERATORS),
                           extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        quantize_static(str(self.prepared), str(out_path), None if self.ranges.is_file() else Reader(),
                        quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=self.reduce_range, calibrate_method=CalibrationMethod.MinMax,
                        calibration_cache_path=str(self.ranges),
                        nodes_to_exclude=[*self.head, *(n for layer in float_layers for n in self.chains[layer])],
                        nodes_to_quantize=list(only or []), **options)
        return out_path

    def sensitivity(self, images: Sequence[np.ndarray], quantized: Union[str, Path],
                    runtime: str = "onnxruntime") -> dict[str, float]:
        """Each layer's sensitivity to INT8 (DAMO-YOLO's partial quantization ranks layers so): how much of the
        detector's output error (mean relative error of scores and boxes against the float graph in onnxruntime,
        on ``images``) keeping that layer alone in float removes from the ``quantized`` graph run on ``runtime`` —
        what the fallback will do."""
        from .resources import cpu_limit
        from .runtimes import build_detector
        float_graph = build_detector(self.prepared, "onnxruntime", cpu_limit())
        reference = [float_graph.run(x) for x in images]

        def error(path) -> float:
            detector = build_detector(path, runtime, cpu_limit())
            return float(np.mean([np.abs(o - r).mean() / (np.abs(r).mean() + 1e-12)
                                  for x, ref in zip(images, reference) for o, r in zip(detector.run(x), ref)]))

        everything = error(quantized)
        return {layer: everything - error(self.quantize(self.workdir / "one_float.onnx", float_layers=[layer]))
                for layer in self.layers}


FLOAT_ACTIVATIONS = ("Relu", "Sigmoid", "Mul", "LeakyRelu", "Clip")


def activation_chains(nodes, layers: Sequence[str]) -> dict[str, list[str]]:
    """Each Conv of ``layers`` with the activation that reads its output alone (ReLU; SiLU: Sigmoid and the Mul of
    the output by it): the nodes a layer kept in float excludes from quantization."""
    readers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    chains = {}
    for conv in (n for n in nodes if n.name in set(layers)):
        after = readers.get(conv.output[0], [])
        chains[conv.name] = [conv.name]
        if after and all(n.op_type in FLOAT_ACTIVATIONS for n in after):
            sigmoids = {n.output[0] for n in after if n.op_type == "Sigmoid"}
            # a Mul is SiLU's when its other operand is the Sigmoid of the same output
            chains[conv.name] += [n.name for n in after if n.op_type != "Mul" or sigmoids & set(n.input)]
    return chains


def quantize_onnx(fp32_path: Union[str, Path], out_path: Union[str, Path], calibration_images: Union[str, Path],
                  input_size: tuple[int, int], resize: str = "stretch", pad_value: float = 0.0,
                  max_images: int = CALIBRATION_IMAGES, layout: str = "tensorrt") -> Path:
    """Write the Q/DQ INT8 version of the FP32 detector ONNX ``fp32_path`` to ``out_path`` in ``layout``."""
    quantizer = Quantizer(fp32_path, calibration_images, input_size, resize, pad_value, max_images, layout)
    return quantizer.quantize(out_path)


class AccuracyBudgetExceeded(ValueError):
    """INT8 stays over its accuracy budget even with the most sensitive layers in float."""


def quantize_within_budget(quantizer: Quantizer, fp32_path: Union[str, Path], out_path: Union[str, Path], serving,
                           annotations: Union[str, Path], images: Union[str, Path], budget: float = 0.01,
                           progress=lambda message: None) -> dict:
    """Measure FP32 (``fp32_path``) and INT8 (``out_path``, as ``quantizer.quantize`` made it) COCO mAP on the
    validation set (``annotations``, ``images``) through the CPU target's own pipeline and runtime; over ``budget``
    (mAP, absolute), keep the layers most sensitive to INT8 in float — 1, 2, 4, ... of them, most sensitive first —
    rewriting ``out_path`` until within it. Returns the record (both mAPs, the budget, the float layers);
    AccuracyBudgetExceeded when no count does."""
    import json
    from dataclasses import replace

    from ..evaluation import evaluate_pipeline
    measure = functools.partial(evaluate_pipeline, serving=serving, ann_file=annotations, img_dir=images)
    progress(f"measuring FP32 mAP on {annotations}")
    fp32 = measure(fp32_path, serving=replace(serving, precision="fp32", runtime="onnxruntime"))["mAP"]  # float32
    float_layers: list[str] = []
    int8 = measure(out_path)["mAP"]
    progress(f"FP32 mAP {fp32:.4f}, INT8 {int8:.4f} (budget {budget:.4f} below FP32)")
    if fp32 - int8 > budget:
        count = len(json.loads(Path(annotations).read_text())["images"])
        progress(f"over the budget: ranking {len(quantizer.layers)} layers by their sensitivity to INT8")
        preprocessed = CalibrationImages(images, quantizer.images.input_size, quantizer.images.resize,
                                         quantizer.images.pad_value, min(SENSITIVITY_IMAGES, count), batch_size=1)
        sensitivity = quantizer.sensitivity(list(preprocessed), out_path, serving.runtime)
        ranked = sorted(quantizer.layers, key=sensitivity.__getitem__, reverse=True)
        keep = 1
        while fp32 - int8 > budget:
            if len(float_layers) == len(ranked):
                raise AccuracyBudgetExceeded(
                    f"INT8 mAP {int8:.4f} against FP32 {fp32:.4f} on {annotations}: {100 * (fp32 - int8):.2f} points "
                    f"lost, over the budget of {100 * budget:.2f}, even with all {len(ranked)} convolutions and "
                    f"their activations in float: export FP32, or give a larger --accuracy-budget")
            float_layers = ranked[:keep]
            int8 = measure(quantizer.quantize(out_path, float_layers))["mAP"]
            progress(f"{len(float_layers)} most sensitive layer(s) in float: INT8 mAP {int8:.4f}")
            keep = min(2 * keep, len(ranked))
    return {"fp32_map": round(fp32, 5), "int8_map": round(int8, 5), "budget": budget, "float_layers": float_layers,
            "validation": str(annotations)}


METHODS = {"tensorrt": "Q/DQ for TensorRT: symmetric INT8, per-channel weights, Conv inputs, MinMax calibration",
           "cpu": "Q/DQ for onnxruntime on CPUs: U8S8 (asymmetric uint8 activations, symmetric per-channel int8 "
                  "weights), operator outputs quantized, head in float, MinMax calibration"}


def quantization_record(calibration_images: Union[str, Path], max_images: int = CALIBRATION_IMAGES,
                        layout: str = "tensorrt", reduce_range: bool = False) -> dict:
    """What the export's record (the repository's ``export`` parameter) says of an INT8 export."""
    import onnxruntime

    from .resources import cpu_isa
    return {"layout": layout, "method": METHODS[layout], "reduce_range": reduce_range, "export_cpu": cpu_isa(),
            "tool": f"onnxruntime {onnxruntime.__version__}",
            "calibration_images": len(calibration_files(calibration_images, max_images)),
            "calibration_folder": str(calibration_images)}


def is_quantized(onnx_path: Union[str, Path]) -> bool:
    """Whether an ONNX graph carries Q/DQ nodes (explicit quantization); False for what is no ONNX graph."""
    import onnx
    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception:  # not ONNX: the parser that reads it next says why
        return False
    return any(node.op_type == "QuantizeLinear" for node in graph.node)

