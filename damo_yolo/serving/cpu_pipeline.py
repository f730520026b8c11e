"""The CPU target's whole detection in one process: encoded images (or decoded BGR pixels) → decode + resize →
the detector's ONNX graph in onnxruntime or OpenVINO (``runtimes``) → score filter, NMS, top-K → boxes in
original pixels.

The served CPU model (``triton/pipeline.py``) is this class behind Triton's python backend: one model
instead of three python-backend steps, so no tensor crosses a process boundary between decode, detector
and NMS (each hop would add a queue and a copy: README, "Export and serving"). Everything
here is Triton-free, so the benchmark runs the very same code in-process.

Requests are batched as Triton's dynamic batcher delivers them: all their images are decoded in a thread
pool (OpenCV releases the GIL), run through one detector call, and post-processed in the pool. One
bad image or threshold fails its own request only; a request found cancelled before the detector runs
costs nothing more.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Hashable, Optional, Sequence, Union

import numpy as np

from damo_yolo.contract import ServingConfig
from damo_yolo.data.preprocess import (
    MAX_PIXELS,
    ImageDecodeError,
    check_image,
    check_pixels,
    decode_image,
    preprocess,
)
from damo_yolo.postprocess import postprocess
from damo_yolo.serving.detections import pack
from damo_yolo.serving.resources import cpu_limit, has_int8_dot_product
from damo_yolo.serving.runtimes import build_detector

Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]  # images [n, 3, H, W] float32, scales [n, 2], sizes [n, 2]
Detections = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # the contract's four outputs


class Cancelled(Exception):
    """The request was cancelled (its client gave up) before the detector ran."""


class OpenCVDecoder:
    """Encoded images → (images [n, 3, H, W] float32, scales [n, 2], sizes [n, 2]) with damo_yolo's own
    decode + resize, the images of a batch spread over ``pool``."""

    def __init__(self, input_size, resize: str, pad_value: float, pool: ThreadPoolExecutor,
                 max_pixels: int = MAX_PIXELS):
        self.size, self.resize, self.pad_value, self.pool = tuple(input_size), resize, pad_value, pool
        self.max_pixels = max_pixels

    def _one(self, data):
        image = check_pixels_input(data, self.max_pixels) if isinstance(data, np.ndarray) else \
            decode_image(data, self.max_pixels)
        return preprocess(image, self.size, self.resize, self.pad_value)

    def decode(self, per_request: dict) -> dict[Hashable, Union[Decoded, Exception]]:
        """key → its images' tensors, or the ImageDecodeError naming the first bad image."""
        flat = [(key, i, data) for key, images in per_request.items() for i, data in enumerate(images)]
        outcomes = list(_map(self.pool, lambda item: _attempt(_named, item[1], self._one, item[2]), flat))
        results: dict[Hashable, Union[Decoded, Exception]] = {}
        by_key: dict[Hashable, list] = {}
        for (key, _, _), outcome in zip(flat, outcomes):
            by_key.setdefault(key, []).append(outcome)
        for key, items in by_key.items():
            bad = next((o for o in items if isinstance(o, Exception)), None)
            if bad is not None:
                results[key] = bad
                continue
            chws, infos = zip(*items)
            results[key] = (np.stack(chws), np.asarray([(f.scale_y, f.scale_x) for f in infos], np.float32),
                            np.asarray([(f.orig_h, f.orig_w) for f in infos], np.int32))
        return results


class DaliDecoder:
    """The same tensors with NVIDIA DALI's CPU operators (``damo-export --preprocess dali``): all images of a
    batch in one pipeline run; when a run fails, each request is run alone so only requests with a bad image
    get an error."""

    def __init__(self, input_size, resize: str, pad_value: float, max_batch_size: int, threads: int,
                 max_pixels: int = MAX_PIXELS):
        self.max_batch_size, self.max_pixels = max(1, int(max_batch_size)), max_pixels
        from damo_yolo.serving.dali_preprocess import build_pipeline
        self._build = functools.partial(build_pipeline, tuple(input_size), resize, pad_value, self.max_batch_size,
                                        device="cpu", num_threads=threads)
        self.pipe = self._build()

    def _run(self, arrays):
        from damo_yolo.serving.dali_preprocess import INPUT_NAME
        try:
            self.pipe.feed_input(INPUT_NAME, arrays)
            return [np.array(tl.as_tensor()) for tl in self.pipe.run()]  # copies: the next run reuses DALI's buffers
        except RuntimeError:
            self.pipe = self._build()  # a failed run may leave the pipeline unusable
            raise

    def _groups(self, per_request: dict):
        """Keys in runs of at most max_batch_size images, no request split across two runs."""
        group: list[Hashable] = []
        count = 0
        for key, arrays in per_request.items():
            if group and count + len(arrays) > self.max_batch_size:
                yield group
                group, count = [], 0
            group.append(key)
            count += len(arrays)
        if group:
            yield group

    def _decode_checked(self, per_request: dict) -> dict[Hashable, Union[Decoded, Exception]]:
        results: dict[Hashable, Union[Decoded, Exception]] = {}
        for group in self._groups(per_request):
            try:
                images, scales, sizes = self._run([a for key in group for a in per_request[key]])
            except RuntimeError as exc:
                if len(group) == 1:
                    results[group[0]] = ImageDecodeError(f"cannot decode the image: {dali_reason(exc)}")
                else:  # find the request(s) the failure belongs to
                    for key in group:
                        results.update(self._decode_checked({key: per_request[key]}))
                continue
            start = 0
            for key in group:
                end = start + len(per_request[key])
                results[key] = (images[start:end], scales[start:end], sizes[start:end])  # sizes checked in decode
                start = end
        return results

    def _check(self, data):
        return check_image(data, self.max_pixels)

    def decode(self, per_request: dict) -> dict:
        results: dict[Hashable, Union[Decoded, Exception]] = {}
        checked: dict[Hashable, list] = {}
        for key, images in per_request.items():
            try:
                checked[key] = [_named(i, self._check, data)[0] for i, data in enumerate(images)]
            except ImageDecodeError as exc:
                results[key] = exc
        if checked:
            results.update(self._decode_checked(checked))
        return results


def check_pixels_input(image: np.ndarray, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A decoded image as PIXELS brings it (BGR uint8 [H, W, 3]; Triton checked type and rank), within the pixel
    limit encoded images keep to; ImageDecodeError otherwise."""
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ImageDecodeError(f"the pixels are {w}x{h}: no image")
    check_pixels(h, w, max_pixels)
    return image


def dali_reason(exc: Exception) -> str:
    """The decoder's own words from a DALI pipeline error (its message is a long traceback)."""
    text = str(exc)
    tail = text.split("encountered:", 1)[-1].strip()
    return (tail.splitlines() or [text])[0][:300]


def _named(i: int, fn, data):
    """fn(data); its ImageDecodeError names image ``i`` of the request."""
    try:
        return fn(data)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"image {i} of the request: {exc}") from None


def _attempt(fn, *args):
    """fn(*args), or the ImageDecodeError it raised (returned, so one bad image does not stop the pool's map)."""
    try:
        return fn(*args)
    except ImageDecodeError as exc:
        return exc


def _map(pool: ThreadPoolExecutor, fn, items: Sequence):
    return pool.map(fn, items) if len(items) > 1 else map(fn, items)


def int8_warning(serving: ServingConfig, flags: Optional[set[str]] = None) -> Optional[str]:
    """What an INT8 repository exported for CPUs with VNNI risks on one without (None where nothing)."""
    if (serving.precision != "int8" or serving.runtime != "onnxruntime" or serving.reduce_range
            or has_int8_dot_product(flags)):
        return None
    return ("this CPU has no VNNI, and the repository's INT8 weights use 8 bits: onnxruntime's AVX2 kernels may "
            "saturate and lose accuracy; export with --reduce-range for such nodes")


class CpuPipeline:
    """Decode, detect and post-process batches of requests (see the module's docstring)."""

    def __init__(self, onnx_path, serving: ServingConfig, max_batch_size: int = 8):
        self.serving = serving
        threads = serving.threads or cpu_limit()  # the container's CPU limit, not the node's count
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="damo-yolo")
        decode = (serving.input_size, serving.resize, serving.pad_value)
        self.decoder = (OpenCVDecoder(*decode, self.pool, serving.max_pixels) if serving.decoder == "opencv"
                        else DaliDecoder(*decode, max_batch_size, threads, serving.max_pixels))
        self.detector = build_detector(onnx_path, serving.runtime, threads, serving.allow_spinning)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def thresholds(self, count: int, score: Optional[np.ndarray] = None, iou: Optional[np.ndarray] = None):
        """Per-image thresholds (the defaults where not given), checked: ValueError names a bad input."""
        score = np.full(count, self.serving.score_threshold, np.float32) if score is None else score
        iou = np.full(count, self.serving.iou_threshold, np.float32) if iou is None else iou
        self.serving.check_thresholds(score, iou)
        return score, iou

    def run(self, requests: dict, cancelled: Callable[[Hashable], bool] = lambda key: False
            ) -> dict[Hashable, Union[Detections, Exception]]:
        """``requests``: key → (images: encoded bytes or BGR uint8 arrays, score thresholds, IoU thresholds), one
        threshold per image.
        Returns key → (num_detections, boxes, scores, classes) as the contract's outputs, or the exception
        that ended the request (ImageDecodeError, ValueError, Cancelled)."""
        results: dict[Hashable, Union[Detections, Exception]] = {}
        decoded = self.decoder.decode({key: images for key, (images, _, _) in requests.items()})
        live: dict[Hashable, Decoded] = {}
        for key, value in decoded.items():
            if isinstance(value, Exception):
                results[key] = value
            elif cancelled(key):
                results[key] = Cancelled("cancelled before the detector ran")
            else:
                live[key] = value
        if not live:
            return results
        batch = np.concatenate([images for images, _, _ in live.values()])
        scores, boxes = self.detector.run(batch)
        jobs, start = [], 0
        for key, (images, _, _) in live.items():
            _, score_thr, iou_thr = requests[key]
            for j in range(len(images)):
                jobs.append((start + j, float(score_thr[j]), float(iou_thr[j])))
            start += len(images)
        k = self.serving.max_detections
        per_image = list(_map(self.pool, lambda job: postprocess(scores[job[0]], boxes[job[0]], job[1], job[2], k),
                              jobs))
        start = 0
        for key, (_, scales, sizes) in live.items():
            n = len(scales)
            results[key] = pack(per_image[start:start + n], scales, sizes, k)
            start += n
        return results
