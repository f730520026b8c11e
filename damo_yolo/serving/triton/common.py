"""Helpers shared by the python-backend models (imported inside the Triton stub, where
``triton_python_backend_utils`` exists)."""
import json

from damo_yolo.contract import ServingConfig
from damo_yolo.serving.release import VERSION_PARAMETER, check_version


def client_error(pb_utils, message: str):
    """A per-request error with the 'invalid argument' code (HTTP 400) where the backend supports codes."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


ERROR_METRIC = "damo_yolo_request_errors_total"
ERROR_REASONS = ("invalid_input", "cancelled")


class ErrorCounter:
    """Requests answered with an error, by reason, as a Triton custom metric on the server's /metrics
    (``damo_yolo_request_errors_total{model, version, reason}``). Triton counts a python-backend request whose
    response carries an error as a success in ``nv_inference_request_success``, so the error rate the
    dashboards and alerts use comes from here."""

    def __init__(self, pb_utils, args):
        family = pb_utils.MetricFamily(name=ERROR_METRIC, description="requests answered with an error, by reason",
                                       kind=pb_utils.MetricFamily.COUNTER)
        labels = {"model": args["model_name"], "version": str(args["model_version"])}
        self._family = family  # the family must outlive its metrics
        self._metrics = {reason: family.Metric(labels={**labels, "reason": reason}) for reason in ERROR_REASONS}

    def count(self, reason: str) -> None:
        self._metrics[reason].increment(1)


def respond_each(pb_utils, requests, one_request, errors: "ErrorCounter | None" = None) -> list:
    """One response per request: ``one_request(request)`` gives its output tensors; a ValueError it raises
    (bad image, bad threshold) becomes that request's own 400, and the other requests are answered."""
    responses = []
    for request in requests:
        try:
            responses.append(pb_utils.InferenceResponse(output_tensors=one_request(request)))
        except ValueError as exc:
            if errors is not None:
                errors.count("invalid_input")
            responses.append(pb_utils.InferenceResponse(error=client_error(pb_utils, str(exc))))
    return responses


def optional_input(pb_utils, request, name: str, default: float, count: int):
    """An optional per-item FP32 input of the request as ``count`` values (``default`` when not sent)."""
    import numpy as np
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return np.full(count, default, np.float32)
    values = tensor.as_numpy().reshape(-1).astype(np.float32)
    if values.size != count:
        raise ValueError(f"{name} holds {values.size} values for {count} images")
    return values


def serving_config(args) -> ServingConfig:
    """The model's serving configuration from its config parameters, once the repository's damo_yolo release is
    checked."""
    config = json.loads(args["model_config"])
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    check_version(params.get(VERSION_PARAMETER, ""))
    return ServingConfig.from_parameters(params)
