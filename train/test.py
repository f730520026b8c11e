"""Evaluate a checkpoint: `python train/test.py CONFIG CHECKPOINT [options]` (the same as `damo-test`)."""
from damo_yolo.tools.test import main

if __name__ == "__main__":
    raise SystemExit(main())
