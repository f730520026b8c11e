"""Helpers shared by the python-backend models (imported inside the Triton stub, where
``triton_python_backend_utils`` exists)."""


def client_error(pb_utils, message: str):
    """A per-request error with the 'invalid argument' code (HTTP 400) where the backend supports codes."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
