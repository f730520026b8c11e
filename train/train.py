"""Train DAMO-YOLO: `python train/train.py CONFIG [options]` (the same as the `damo-train` command)."""
from damo_yolo.tools.train import main

if __name__ == "__main__":
    raise SystemExit(main())
