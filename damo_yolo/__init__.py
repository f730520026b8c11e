"""damo_yolo: the DAMO-YOLO detector (arXiv 2211.15444) and everything around it: data, training,
evaluation and deployment to NVIDIA Triton Inference Server."""
__version__ = "0.1.0"
