"""Written by damo-export: the pipeline model of this DAMO-YOLO repository;
the code is the installed damo_yolo package's."""
from damo_yolo.serving.triton.pipeline import TritonPythonModel  # noqa: F401
