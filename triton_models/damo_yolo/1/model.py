"""Written by damo-export: pipeline model of the DAMO-YOLO ensemble; the code is the installed damo_yolo package's."""
from damo_yolo.deploy.triton.pipeline import TritonPythonModel  # noqa: F401
