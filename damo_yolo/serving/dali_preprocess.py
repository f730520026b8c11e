"""NVIDIA DALI preprocessing: the GPU target's decode + resize, equal to ``damo_yolo.data.preprocess``.

One pipeline definition serves both devices: ``device="gpu"`` decodes with nvJPEG (DALI's "mixed"
decoder) and resizes on the GPU; ``device="cpu"`` builds the same graph with CPU operators, which is how
hosts without a GPU (CI included) check it against the OpenCV preprocessing.

Where the GPU graph decodes JPEGs (``decode_path``, recorded in the repository as ``ServingConfig.dali_decode``):
``auto`` is DALI's mixed decoder as it comes, which sends most JPEGs to the GPU's hardware JPEG decoder where
the GPU has one; ``cuda`` keeps the mixed decoder on nvJPEG's CUDA path (``hw_decoder_load=0``); ``cpu``
decodes with the CPU operator (libjpeg-turbo, the CPU graph's decoder) and moves the pixels to the GPU before
the resize. The last two tell a decoder's pixels from the rest of the GPU path when a comparison fails.

The graph is valid under DALI's legacy executor, which Triton's DALI backend runs pipelines with: data only
moves CPU → GPU. The image sizes that drive the resize and the SCALE/ORIG_SIZE outputs are read on the CPU
from the encoded bytes (``peek_image_shape``, EXIF orientation applied as the decoder applies it), never
from the decoded GPU image.

Per image (fed by name ``IMAGE``, encoded bytes as uint8; names from damo_yolo.contract):
    decode → RGB (EXIF orientation applied) → resize linear, no antialias, rounded to uint8 (OpenCV's
    INTER_LINEAR) → [letterbox: top-left, padded with pad_value] → float32 CHW
Outputs: ``images`` [3, H, W] float32, ``SCALE`` (scale_y, scale_x) float32, ``ORIG_SIZE`` (h, w) int32 —
the same tensors as the OpenCV python-backend model.
"""
from __future__ import annotations

from typing import Optional

from damo_yolo import contract as C
from damo_yolo.data.preprocess import RESIZE_MODES

DEVICES = ("gpu", "cpu")
LEGACY_EXECUTOR = {"exec_dynamic": False}  # how Triton's DALI backend executes a model.dali
INPUT_NAME = C.IMAGE.name
OUTPUT_NAMES = tuple(t.name for t in C.PREPROCESS_OUTPUTS)


def _orientation_aware(fn):
    """DALI's header reader and decoder that apply EXIF orientation: the main ``peek_image_shape`` and
    ``decoders.image`` from DALI 2.2; before that their ``fn.experimental`` (nvImageCodec) twins — the main
    ones of DALI 1.x ignore the orientation."""
    from nvidia.dali import backend
    schema = backend.GetSchema  # type: ignore[attr-defined]  # the compiled backend's stub omits it
    if all(schema(op).HasArgument("adjust_orientation") for op in ("PeekImageShape", "decoders__Image")):
        return fn.peek_image_shape, fn.decoders.image
    return fn.experimental.peek_image_shape, fn.experimental.decoders.image


def build_pipeline(input_size: tuple[int, int], resize: str = "stretch", pad_value: float = 0.0,
                   max_batch_size: int = 8, device: str = "gpu", device_id: Optional[int] = 0, num_threads: int = 2,
                   build: bool = True, decode_path: str = "auto"):
    """A built DALI pipeline for the model input ``input_size`` = (H, W); feed it with ``feed_input(INPUT_NAME, ...)``.
    ``build=False`` leaves it unbuilt (to serialize). ``device_id=None`` defines a GPU graph without a GPU (the
    DALI backend picks the device of each model instance when it loads the file). ``decode_path``: where the GPU
    graph decodes JPEGs (``C.DALI_DECODE_PATHS``; the CPU graph decodes on the CPU, so "auto" or "cpu")."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize!r}; known: {', '.join(RESIZE_MODES)}")
    if device not in DEVICES:
        raise ValueError(f"unknown DALI device {device!r}; choose {' or '.join(DEVICES)}")
    if decode_path not in C.DALI_DECODE_PATHS:
        raise ValueError(f"unknown DALI decode path {decode_path!r}; choose {' or '.join(C.DALI_DECODE_PATHS)}")
    if device == "cpu" and decode_path == "cuda":
        raise ValueError("decode path 'cuda' is the GPU graph's: the CPU graph decodes on the CPU")
    th, tw = (int(v) for v in input_size)
    device_id = device_id if device == "gpu" else None

    @pipeline_def(batch_size=max_batch_size, num_threads=num_threads, device_id=device_id,
                  prefetch_queue_depth=1, **LEGACY_EXECUTOR)
    def pipeline():
        encoded = fn.external_source(name=INPUT_NAME, dtype=types.UINT8, ndim=1, device="cpu")
        # (h, w, c) of the image as decoded (after its EXIF rotation), read on the CPU from the header
        peek_image_shape, decode = _orientation_aware(fn)
        shape = peek_image_shape(encoded, dtype=types.FLOAT, adjust_orientation=True)
        h, w = shape[0], shape[1]
        # fancy (interpolating) chroma upsampling, as libjpeg-turbo in OpenCV; nvJPEG's default is off
        on_gpu = device == "gpu" and decode_path != "cpu"
        hardware = {"hw_decoder_load": 0.0} if on_gpu and decode_path == "cuda" else {}  # no hardware JPEG decoder
        image = decode(encoded, device="mixed" if on_gpu else "cpu", output_type=types.RGB, adjust_orientation=True,
                       jpeg_fancy_upsampling=True, **hardware)
        if device == "gpu" and not on_gpu:
            image = image.gpu()  # decoded on the CPU, resized on the GPU: data only moves CPU -> GPU
        if resize == "stretch":
            new_h, new_w = th, tw
            scale = fn.stack(th / h, tw / w)
        else:
            ratio = dmath.min(th / h, tw / w)
            new_h = dmath.max(dmath.floor(h * ratio), 1.0)
            new_w = dmath.max(dmath.floor(w * ratio), 1.0)
            scale = fn.stack(new_h / h, new_w / w)
        image = fn.resize(image, resize_x=new_w, resize_y=new_h, interp_type=types.INTERP_LINEAR,
                          antialias=False, dtype=types.UINT8)
        if resize == "letterbox":
            image = fn.pad(image, axes=(0, 1), shape=(th, tw), fill_value=float(pad_value))
        chw = fn.transpose(fn.cast(image, dtype=types.FLOAT), perm=[2, 0, 1])
        return chw, scale, fn.cast(fn.stack(h, w), dtype=types.INT32)

    pipe = pipeline()
    if build:
        pipe.build()
    return pipe


def serialize_pipeline(path, input_size: tuple[int, int], resize: str = "stretch", pad_value: float = 0.0,
                       max_batch_size: int = 8, device: str = "gpu", num_threads: int = 2,
                       device_id: Optional[int] = 0, decode_path: str = "auto"):
    """Write the pipeline as the ``model.dali`` file Triton's DALI backend loads (input ``IMAGE``: encoded bytes
    as UINT8; outputs in the order images, SCALE, ORIG_SIZE). The backend gives each instance its own GPU,
    batch size and threads; the file records the operators of the DALI that writes it, so it is written by
    the serving container's DALI (damo-export --target gpu checks). A GPU graph is serialized for device 0
    where CUDA is (DALI 1.x refuses a GPU operator without a device); ``device_id=None`` serializes it
    without CUDA on DALI releases that allow it. ``decode_path``: as in :func:`build_pipeline`."""
    from pathlib import Path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipe = build_pipeline(input_size, resize, pad_value, max_batch_size, device, device_id=device_id,
                          num_threads=num_threads, build=False, decode_path=decode_path)
    pipe.serialize(filename=str(path))
    return path

