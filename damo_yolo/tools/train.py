"""`damo-train`: train DAMO-YOLO with an mmengine config (train/configs/*.py).

    damo-train train/configs/damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py
    damo-train CONFIG --resume                  # continue the last run in the work dir
    damo-train CONFIG --resume work_dirs/x/epoch_7.pth
    damo-train CONFIG --finetune damoyolo_tinynasL18_Ns.pth   # backbone and neck from a checkpoint, fresh head
    torchrun --nproc_per_node 8 -m damo_yolo.tools.train CONFIG --launcher pytorch

The work dir receives mmengine checkpoints of the last two epochs (epoch_N.pth, for --resume), ``latest.pth``
and ``best.pth`` (best val mAP) in the project's checkpoint format (for damo-export and damo-test), logs,
scalars.json and tensorboard event files.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from damo_yolo.data.coco import DataError
from damo_yolo.training.config import ConfigError


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="damo-train", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="mmengine config file")
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default: work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                        help="continue training: from the latest checkpoint of the work dir, or from CHECKPOINT")
    parser.add_argument("--finetune", metavar="CHECKPOINT",
                        help="start from this official or project checkpoint's backbone and neck, with a fresh head "
                             "for the config's classes (the config's finetune setting)")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (GPU)")
    parser.add_argument("--auto-scale-lr", action="store_true", help="scale the lr to the actual total batch size")
    parser.add_argument("--teacher-config", help="distil from this teacher's config (with --teacher-checkpoint; the "
                                                     "config's teacher setting)")
    parser.add_argument("--teacher-checkpoint", help="the teacher's checkpoint")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config settings, e.g. train_cfg.max_epochs=10")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                        help="job launcher for distributed training (torchrun: pytorch)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    if bool(args.teacher_config) != bool(args.teacher_checkpoint):
        parser.error("--teacher-config and --teacher-checkpoint go together")
    return args


def _parse_options(options: list[str]) -> dict:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser()
    parser.add_argument("--o", nargs="+", action=DictAction, default={})
    return parser.parse_args(["--o", *options]).o if options else {}


def build_config(args: argparse.Namespace):
    from damo_yolo.training.config import load_config
    config_path = Path(args.config)
    options = _parse_options(args.cfg_options)
    if args.finetune:
        options["finetune"] = args.finetune
    if args.teacher_config:
        options.update(teacher_config=args.teacher_config, teacher_checkpoint=args.teacher_checkpoint)
    cfg = load_config(config_path, options)
    cfg.launcher = args.launcher
    import torch
    if not torch.cuda.is_available():  # CPU processes: gloo instead of NCCL, and no SyncBN (CUDA only)
        cfg.env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"
        cfg.sync_bn = None
        if args.launcher != "none":  # DDP over CPU modules takes no device ids
            cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or str(Path("work_dirs") / config_path.stem)
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    return cfg


def check_data(cfg) -> None:
    """Refuse, in one line, a config whose data or checkpoints are not there (before mmengine prints it)."""
    from damo_yolo.models import CheckpointError
    from damo_yolo.training.config import data_files
    for key in ("finetune", "load_from"):
        if cfg.get(key) and not Path(cfg[key]).is_file():
            raise CheckpointError(f"{key} checkpoint not found: {cfg[key]}")
    missing = [p for p in data_files(cfg) if not p.exists()]
    if missing:
        raise DataError(f"{missing[0]} not found: put the data set there, point the config at it "
                        "(--cfg-options data_root=DIR/), or generate the synthetic set: "
                        "damo-synthetic --out data/synthetic")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    from mmengine.runner import Runner

    import damo_yolo.training  # noqa: F401  registers the DAMO-YOLO modules with mmengine
    from damo_yolo.models import CheckpointError
    try:
        cfg = build_config(args)
        check_data(cfg)
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"damo-train: {exc}", file=sys.stderr)
        return 1
    import torch
    if args.launcher == "pytorch" and not torch.cuda.is_available():
        # mmengine's pytorch launcher selects a CUDA device unconditionally; on CPU hosts join the group
        # with gloo here (torchrun's environment), and the Runner uses the initialised group as it is.
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group(backend="gloo")
    runner = Runner.from_cfg(cfg)
    try:
        runner.train()
    except (DataError, CheckpointError) as exc:  # found while reading (an annotation file that is not COCO, a
        # fine-tuning checkpoint of another model)
        print(f"damo-train: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
