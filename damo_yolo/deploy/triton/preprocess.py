"""Triton python backend: encoded image bytes → model input, with the mapping back to the original image.

Inputs:  IMAGE      BYTES  [1]          one encoded image per batch item
Outputs: images     FP32   [3, H, W]    RGB 0–255, resized as the checkpoint was trained
         SCALE      FP32   [2]          (scale_y, scale_x): input pixels = original pixels · scale
         ORIG_SIZE  INT32  [2]          (height, width) of the original image
(names and types: damo_yolo.contract)
A request whose image cannot be decoded gets an error naming the item and the reason; the other
requests of the batch are answered normally.
"""
import numpy as np
import triton_python_backend_utils as pb_utils

from damo_yolo import contract as C
from damo_yolo.data.preprocess import ImageDecodeError, decode_image, preprocess
from damo_yolo.deploy.triton.common import model_parameters, respond_each


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        self.size = (int(params["input_height"]), int(params["input_width"]))
        self.resize = params.get("resize", "stretch")
        self.pad_value = float(params.get("pad_value", "0"))

    def _one_request(self, request):
        images = pb_utils.get_input_tensor_by_name(request, C.IMAGE.name).as_numpy().reshape(-1)
        if images.size == 0:
            raise ImageDecodeError("the request holds no image")
        inputs, scales, sizes = [], [], []
        for i, data in enumerate(images):
            try:
                chw, info = preprocess(decode_image(data), self.size, self.resize, self.pad_value)
            except ImageDecodeError as exc:
                raise ImageDecodeError(f"image {i} of the request: {exc}") from None
            inputs.append(chw)
            scales.append((info.scale_y, info.scale_x))
            sizes.append((info.orig_h, info.orig_w))
        return [pb_utils.Tensor(C.MODEL_INPUT.name, np.stack(inputs).astype(np.float32)),
                pb_utils.Tensor(C.SCALE.name, np.asarray(scales, np.float32)),
                pb_utils.Tensor(C.ORIG_SIZE.name, np.asarray(sizes, np.int32))]

    def execute(self, requests):  # an image that cannot be decoded (a ValueError) fails its own request only
        return respond_each(pb_utils, requests, self._one_request)
