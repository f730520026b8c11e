"""Threads follow the container's CPU limit, not the node's count: the downward-API variable, the cgroup's CFS
quota (v2 cpu.max, v1 cfs files) and the CPUs the process may run on, whichever is smallest; the CPU pipeline
(the server's code) sizes onnxruntime and its decode pool from it."""
from __future__ import annotations

import os

import pytest

from damo_yolo.serving.resources import CPU_LIMIT_ENV, cpu_limit

SCHEDULABLE = len(os.sched_getaffinity(0))


def _cgroup(tmp_path, v2=None, v1=None):
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")
    return tmp_path


@pytest.mark.parametrize("v2,v1,env,want", [
    ("max 100000", None, {}, SCHEDULABLE),  # no quota: the CPUs it may run on
    ("100000 100000", None, {}, 1),  # limits.cpu: 1
    ("50000 100000", None, {}, 1),  # 500m: one thread, never zero
    ("150000 100000", None, {}, min(2, SCHEDULABLE)),  # 1.5 CPUs: rounded up
    (None, (100000, 100000), {}, 1),  # cgroup v1
    (None, (-1, 100000), {}, SCHEDULABLE),  # v1 without a quota
    (None, None, {CPU_LIMIT_ENV: "1"}, 1),  # the downward API's limits.cpu
    ("max 100000", None, {CPU_LIMIT_ENV: "64"}, SCHEDULABLE),  # a node-sized value never raises it
])
def test_cpu_limit(tmp_path, v2, v1, env, want):
    assert cpu_limit(_cgroup(tmp_path, v2, v1), env) == want


def test_a_malformed_limit_is_named(tmp_path):
    with pytest.raises(ValueError, match=f"{CPU_LIMIT_ENV}='two' is not a number of CPUs"):
        cpu_limit(tmp_path, {CPU_LIMIT_ENV: "two"})


def test_the_pipeline_sizes_its_threads_from_the_limit(monkeypatch, tmp_path):
    from pathlib import Path

    from damo_yolo.models import load_model
    from damo_yolo.serving.cpu_pipeline import CpuPipeline
    from damo_yolo.serving.onnx_export import export_onnx
    from damo_yolo.tools.export import ExportOptions
    model, meta = load_model(Path(__file__).resolve().parents[2] / "demo" / "model"
                             / "damoyolo_tinynasL18_Ns_synthetic.pth")
    onnx_path = export_onnx(model, tmp_path / "model.onnx", input_size=tuple(meta.input_size))
    monkeypatch.setenv(CPU_LIMIT_ENV, "1")
    pipe = CpuPipeline(onnx_path, ExportOptions().serving_config(meta))
    try:
        assert pipe.detector.session.get_session_options().intra_op_num_threads == 1 and pipe.pool._max_workers == 1
    finally:
        pipe.close()
