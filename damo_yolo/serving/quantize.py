"""INT8 by explicit quantization: a Q/DQ ONNX of the detector, calibrated on a folder of images on the CPU.

One graph serves both targets: onnxruntime runs it on the CPU target (``damo-export --precision int8``), and the
GPU target's TensorRT builds its INT8 plan from it (no implicit calibrator: TensorRT deprecated those in 10.1
and removed them in 11). The Q/DQ layout is the one TensorRT's explicit quantization expects:

- symmetric INT8 everywhere (zero points 0), per-output-channel weight scales;
- Q/DQ on the inputs of every Conv (activation and weight), none added on its output, so TensorRT fuses
  Conv + bias + activation between them; a tensor that a Conv shares with other readers (a residual Add, a
  Concat) is read by all of them through the same Q/DQ pair; biases stay float (TensorRT has no INT32
  dequantisation);
- activation ranges from the calibration images (max of |x|), preprocessed as at serving time.

Made with onnxruntime's static quantizer (``onnxruntime.quantization``).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from .onnx_export import INPUT_NAME

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
CALIBRATION_IMAGES = 128  # images calibration reads (the first of the folder, sorted by name)


def calibration_files(folder: Union[str, Path], max_images: int = CALIBRATION_IMAGES) -> list[Path]:
    """The images calibration reads: the first ``max_images`` of ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"calibration images: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no calibration images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files[:max_images]


class CalibrationImages:
    """Batches of preprocessed images (float32 NCHW, RGB 0–255, the serving preprocessing) from a folder."""

    def __init__(self, folder: Union[str, Path], input_size: tuple[int, int], resize: str = "stretch",
                 pad_value: float = 0.0, max_images: int = CALIBRATION_IMAGES, batch_size: int = 8):
        if max_images < 1 or batch_size < 1:
            raise ValueError("max_images and batch_size must be at least 1")
        self.files = calibration_files(folder, max_images)
        self.input_size, self.resize, self.pad_value, self.batch_size = input_size, resize, pad_value, batch_size

    def __iter__(self) -> Iterator[np.ndarray]:
        from ..data.preprocess import decode_image, preprocess
        batch: list[np.ndarray] = []
        for path in self.files:
            try:
                image = decode_image(path.read_bytes())
            except ValueError:
                continue  # an unreadable file does not stop calibration
            batch.append(preprocess(image, self.input_size, self.resize, self.pad_value)[0])
            if len(batch) == self.batch_size:
                yield np.ascontiguousarray(np.stack(batch))
                batch = []
        if batch:
            yield np.ascontiguousarray(np.stack(batch))


def quantize_onnx(fp32_path: Union[str, Path], out_path: Union[str, Path], calibration_images: Union[str, Path],
                  input_size: tuple[int, int], resize: str = "stretch", pad_value: float = 0.0,
                  max_images: int = CALIBRATION_IMAGES) -> Path:
    """Write the Q/DQ INT8 version of the FP32 detector ONNX ``fp32_path`` to ``out_path``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = CalibrationImages(calibration_images, input_size, resize, pad_value, max_images)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(images)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"  # shapes inferred (symbolically: the batch is dynamic)
        quant_pre_process(str(fp32_path), str(prepared), auto_merge=True)
        quantize_static(str(prepared), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                        op_types_to_quantize=["Conv"], calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                       "QuantizeBias": False, "OpTypesToExcludeOutputQuantization": ["Conv"]})
    return out_path


def quantization_record(calibration_images: Union[str, Path], max_images: int = CALIBRATION_IMAGES) -> dict:
    """What the export's record (the repository's ``export`` parameter) says of an INT8 export."""
    import onnxruntime
    return {"method": "Q/DQ, symmetric INT8, per-channel weights, Conv inputs, MinMax calibration",
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
