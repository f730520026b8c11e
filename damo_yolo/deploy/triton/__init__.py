"""Triton python-backend models of the CPU target. Each file is copied into the model repository as
``<model>/1/model.py``; they move tensors only and call the project's own functions (decode, resize,
NMS), so served and local results are computed by the same code."""
