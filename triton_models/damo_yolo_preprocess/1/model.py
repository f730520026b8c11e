"""Written by damo-export: preprocess model of the DAMO-YOLO ensemble; the code is the installed damo_yolo package's."""
from damo_yolo.deploy.triton.preprocess import TritonPythonModel  # noqa: F401
