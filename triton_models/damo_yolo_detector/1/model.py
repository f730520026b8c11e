"""Written by damo-export: detector onnxruntime model of the DAMO-YOLO ensemble; the code is the installed damo_yolo package's."""
from damo_yolo.deploy.triton.detector_onnxruntime import TritonPythonModel  # noqa: F401
