"""Test stand-in for Triton's DALI backend, which the bundled server lacks: loads the repository's model.dali
(here serialized with DALI's CPU operators) and runs it through DALI's Python API on the requests' UINT8
encoded images, as the backend does — one pipeline run per execute, and, as the backend does, an image the
pipeline cannot decode fails every request of that run."""
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from nvidia.dali import Pipeline

from damo_yolo import contract as C


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = Path(args["model_repository"]) / args["model_version"] / "model.dali"
        self.options = dict(serialized_pipeline=path.read_bytes(), batch_size=int(config["max_batch_size"]),
                            num_threads=2, device_id=None)
        self.pipe = Pipeline.deserialize(**self.options)
        self.pipe.build()

    def execute(self, requests):
        rows = [pb_utils.get_input_tensor_by_name(r, C.IMAGE_ENCODED.name).as_numpy() for r in requests]
        try:
            self.pipe.feed_input(C.IMAGE_ENCODED.name, [row for batch in rows for row in batch])
            outputs = [np.array(tl.as_tensor()) for tl in self.pipe.run()]
        except RuntimeError as exc:
            self.pipe = Pipeline.deserialize(**self.options)
            self.pipe.build()
            error = pb_utils.TritonError(f"DALI: {str(exc).splitlines()[0][:200]}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses, start = [], 0
        for batch in rows:
            end = start + len(batch)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(t.name, out[start:end]) for t, out in zip(C.PREPROCESS_OUTPUTS, outputs)]))
            start = end
        return responses
