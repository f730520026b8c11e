"""Written by damo-export: postprocess model of the DAMO-YOLO ensemble; the code is the installed damo_yolo package's."""
from damo_yolo.deploy.triton.postprocess import TritonPythonModel  # noqa: F401
