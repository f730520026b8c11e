"""The client's exceptions: one base class, so callers can catch everything the SDK raises."""


class DamoClientError(Exception):
    """Base class of every error raised by damo_client."""


class ServerUnavailable(DamoClientError):
    """The server could not be reached (after the configured retries)."""


class InferenceError(DamoClientError):
    """The server answered with an error; the message is the server's own (e.g. why an image was refused)."""


class ContractError(DamoClientError):
    """The model on the server is not a DAMO-YOLO detector as this client speaks to it (expected vs got)."""


class ImageError(DamoClientError):
    """A local input that cannot be sent: missing file, unreadable, or an array that is not an image."""


class WrongProtocol(DamoClientError):
    """The address answers, but in the other protocol (an HTTP client at the gRPC port, or the reverse)."""


class RestrictedAPI(InferenceError):
    """The server keeps this API for its operator (Triton's restricted APIs): the admin key is missing or wrong."""
