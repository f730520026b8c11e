"""`damo-browse-dataset` writes what the pipeline feeds the model, boxes drawn, for both phases."""
from __future__ import annotations

import subprocess
import sys

import cv2
from training_utils import ROOT, SYNTHETIC_CONFIG


def test_browse_dataset_draws_samples_of_both_phases(tmp_path, tiny_synthetic):
    for phase in ("main", "last"):
        out = tmp_path / phase
        run = subprocess.run([sys.executable, "-m", "damo_yolo.tools.browse_dataset", str(SYNTHETIC_CONFIG),
                              "--out", str(out), "--count", "3", "--epoch", "10", "--phase", phase,
                              "--cfg-options", f"data_root={tiny_synthetic}/"],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        written = sorted(out.glob("*.jpg"))
        assert len(written) == 3 and all(cv2.imread(str(p)).shape == (256, 256, 3) for p in written)
        lines = run.stdout.strip().splitlines()
        assert len(lines) == 1 and ("ScaleAwareBoxAugment" in lines[0]) == (phase == "main"), lines
    bad = subprocess.run([sys.executable, "-m", "damo_yolo.tools.browse_dataset", str(SYNTHETIC_CONFIG),
                          "--cfg-options", "input_size=128"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "input_size must be" in bad.stderr
