"""Serving: ONNX export, the end2end (EfficientNMS) graph, the TensorRT builder, the CPU pipeline, the Triton
model repository generator and the bundled tritonserver's launcher. (The top-level ``deploy/`` folder holds the
container images, Kubernetes manifests and dashboards that run many servers.)"""
