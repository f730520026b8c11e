"""Triton python backend: encoded image bytes → model input with NVIDIA DALI's CPU operators, for servers
without Triton's DALI backend (the CPU target's ``--preprocess dali``; the GPU target serves the same pipeline
definition as the DALI backend's model.dali).

The same tensors as the OpenCV model (preprocess.py): images FP32 [3, H, W], SCALE FP32 [2], ORIG_SIZE INT32 [2].
All images of a dynamic batch go through one pipeline run; when that run fails, each request is retried
alone so only the requests with a bad image get an error. Outputs are copied out of DALI's buffers (which
its next run reuses) as soon as a run ends.
"""
import json

import numpy as np
import triton_python_backend_utils as pb_utils

from damo_yolo.data.preprocess import ImageDecodeError, check_encoded, check_pixels
from damo_yolo.deploy.dali_preprocess import INPUT_NAME, OUTPUT_NAMES, build_pipeline
from damo_yolo.deploy.triton.common import client_error, model_parameters


def _dali_reason(exc: Exception) -> str:
    """The decoder's own words from a DALI pipeline error (its message is a long traceback)."""
    text = str(exc)
    tail = text.split("encountered:", 1)[-1].strip()
    return (tail.splitlines() or [text])[0][:300]


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = model_parameters(args)
        self.max_batch_size = max(1, int(config.get("max_batch_size", 1)))
        self.options = dict(input_size=(int(params["input_height"]), int(params["input_width"])),
                            resize=params.get("resize", "stretch"), pad_value=float(params.get("pad_value", "0")),
                            max_batch_size=self.max_batch_size, device="cpu",
                            num_threads=int(params.get("dali_threads", "2")))
        self.pipe = build_pipeline(**self.options)

    def finalize(self):
        """Release the pipeline (its worker threads) so the model unloads at once."""
        self.pipe = None

    def _run(self, arrays):
        """One pipeline run over encoded images (at most max_batch_size) → the three output TensorLists."""
        try:
            self.pipe.feed_input(INPUT_NAME, arrays)
            return self.pipe.run()
        except RuntimeError:
            self.pipe = build_pipeline(**self.options)  # a failed run may leave the pipeline unusable
            raise

    @staticmethod
    def _tensors(outputs, indices):
        """Triton tensors (copies) for the samples ``indices`` of one pipeline run (one request's images)."""
        tensors = []
        for name, tl in zip(OUTPUT_NAMES, outputs):
            dense = tl.as_tensor() if len(indices) == len(tl) else type(tl)([tl[i] for i in indices],
                                                                              tl.layout()).as_tensor()
            tensors.append(pb_utils.Tensor(name, np.array(dense)))  # np.array copies
        return tensors

    def _groups(self, per_request):
        """Request ids in runs of at most max_batch_size images, no request split across two runs."""
        group, count = [], 0
        for r, arrays in per_request.items():
            if group and count + len(arrays) > self.max_batch_size:
                yield group
                group, count = [], 0
            group.append(r)
            count += len(arrays)
        if group:
            yield group

    def _decode(self, per_request):
        """request id → its Triton tensors, or the exception that stopped its images."""
        results = {}
        for group in self._groups(per_request):
            try:
                outputs = self._run([a for r in group for a in per_request[r]])
            except RuntimeError as exc:
                if len(group) == 1:
                    results[group[0]] = exc
                else:  # find the request(s) the failure belongs to
                    for r in group:
                        results.update(self._decode({r: per_request[r]}))
                continue
            sizes = np.asarray(outputs[2].as_tensor())
            start = 0
            for r in group:
                indices = list(range(start, start + len(per_request[r])))
                start = indices[-1] + 1
                try:
                    for h, w in sizes[indices]:
                        check_pixels(int(h), int(w))
                except ImageDecodeError as exc:
                    results[r] = exc
                    continue
                results[r] = self._tensors(outputs, indices)
        return results

    def execute(self, requests):
        errors, per_request = {}, {}
        for r, request in enumerate(requests):
            images = pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy().reshape(-1)
            try:
                if images.size == 0:
                    raise ImageDecodeError("the request holds no image")
                arrays = []
                for i, data in enumerate(images):
                    try:
                        arrays.append(check_encoded(data)[0])
                    except ImageDecodeError as exc:
                        raise ImageDecodeError(f"image {i} of the request: {exc}") from None
                per_request[r] = arrays
            except ImageDecodeError as exc:
                errors[r] = str(exc)
        results = self._decode(per_request) if per_request else {}
        responses = []
        for r in range(len(requests)):
            result = results.get(r)
            if r in errors:
                message = errors[r]
            elif isinstance(result, ImageDecodeError):
                message = str(result)
            elif isinstance(result, Exception):
                message = f"cannot decode the image: {_dali_reason(result)}"
            else:
                responses.append(pb_utils.InferenceResponse(output_tensors=result))
                continue
            responses.append(pb_utils.InferenceResponse(error=client_error(pb_utils, message)))
        return responses
