"""Deployment: ONNX export, the end2end (EfficientNMS) graph, the TensorRT builder and the Triton
model repository generator."""
