"""damo_client: a thin client for DAMO-YOLO served by Triton (tritonclient, numpy, OpenCV, click; no torch)."""
from damo_client.client import AsyncDamoClient, DamoClient
from damo_client.errors import (
    ContractError,
    DamoClientError,
    ImageError,
    InferenceError,
    RestrictedAPI,
    ServerUnavailable,
    WrongProtocol,
)
from damo_client.results import Detection

__version__ = "0.1.0"
__all__ = ["DamoClient", "AsyncDamoClient", "Detection", "DamoClientError", "ServerUnavailable", "InferenceError",
           "ContractError", "ImageError", "WrongProtocol", "RestrictedAPI"]
