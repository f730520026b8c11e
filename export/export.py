"""Export a checkpoint to a Triton model repository: `python export/export.py CHECKPOINT --out triton_models`
(the same as the `damo-export` command)."""
from damo_yolo.tools.export import main

if __name__ == "__main__":
    raise SystemExit(main())
