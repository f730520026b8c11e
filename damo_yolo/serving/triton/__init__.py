"""Triton python-backend models: ``pipeline`` (the CPU target's one model: decode, detector, NMS) and ``mapback``
(the GPU ensemble's last step). A repository's ``<model>/1/model.py`` imports its class from here, so served and
local results are computed by the same installed code."""
