"""damo_client: a thin client for the DAMO-YOLO Triton ensemble (no torch)."""
__version__ = "0.1.0"
