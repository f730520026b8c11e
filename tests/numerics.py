"""The suite's numeric tolerances, in one place, with the measurements they come from.

float32 kernels (convolution, GEMM, exp) round differently from one CPU to another, so a float32 result
is only reproducible to its rounding. Measured with the official fixtures (../shared/fixtures/official,
80 classes, random weights that give boxes of hundreds of pixels):
- the official code run in float32 on two x86 CPUs (Intel, AMD EPYC): 1.0e-4 in scores, 0.029 px in boxes;
- the official float32 outputs against its own float64 outputs: <= 8.6e-5 / 0.024 px (T), 5.5e-5 / 6.7e-3 (Ns);
- this project's float32 against the official float64 on an AMD EPYC: <= 8.0e-5 / 0.021 px (T), 4.4e-5 / 6.7e-3 (Ns);
- this project's float64 against the official float64: <= 1.1e-13 in scores, <= 9.4e-5 px in boxes (the
  official box decode keeps one float32 constant), on any machine.

So an exact comparison is made in float64, and a float32 result is compared with the float64 truth (a
machine-independent reference) with about three times the measured float32 rounding as its tolerance.
"""
from __future__ import annotations

import numpy as np
import torch

FLOAT64_SCORE_TOL, FLOAT64_BOX_TOL = 1e-9, 1e-3  # float64 against float64: rounding, not a difference
FLOAT32_SCORE_TOL, FLOAT32_BOX_TOL = 3e-4, 0.06  # float32 on any x86 CPU against the float64 truth


def max_abs_diff(got, want) -> float:
    """Largest absolute difference, computed in float64 (numpy arrays or torch tensors)."""
    def as64(t):
        return t.detach().double().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float64)

    a, b = as64(got), as64(want)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.abs(a - b).max()) if a.size else 0.0


def assert_float32_close(scores, boxes, want_scores, want_boxes, what: str = "") -> tuple[float, float]:
    """float32 outputs within float32 rounding of the float64 truth (any CPU)."""
    score_err, box_err = max_abs_diff(scores, want_scores), max_abs_diff(boxes, want_boxes)
    assert score_err <= FLOAT32_SCORE_TOL, f"{what}: scores differ by {score_err:.3g} (> {FLOAT32_SCORE_TOL})"
    assert box_err <= FLOAT32_BOX_TOL, f"{what}: boxes differ by {box_err:.3g} px (> {FLOAT32_BOX_TOL})"
    return score_err, box_err
