"""`damo-train`: train DAMO-YOLO with an mmengine config (train/configs/*.py).

    damo-train train/configs/damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py
    damo-train CONFIG --resume                  # continue the last run in the work dir
    damo-train CONFIG --resume work_dirs/x/epoch_7.pth
    damo-train CONFIG --finetune damoyolo_tinynasL18_Ns.pth   # backbone and neck from a checkpoint, fresh head
    torchrun --nproc_per_node 8 -m damo_yolo.tools.train CONFIG --launcher pytorch

The work dir receives mmengine checkpoints of the last two epochs (epoch_N.pth, for --resume), ``latest.pth``
and ``best.pth`` (best val mAP) in the project's checkpoint format (for damo-export and damo-test), logs,
scalars.json and tensorboard event files.

The arguments and files named on the command line are checked before anything heavy is imported (torch and
mmengine take seconds), and the config's settings before the Runner is built.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import click

from damo_yolo.cli import CONTEXT, key_values, parse_cfg_options, run, several_values

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")
CFG_OPTIONS = "--cfg-options"


@dataclass(frozen=True)
class TrainArgs:
    """The command line of a training run."""

    config: Path
    work_dir: Optional[Path] = None  # None: the config's work_dir, else work_dirs/<config name>
    resume: Optional[str] = None  # "auto": the work dir's last checkpoint; else a checkpoint path
    finetune: Optional[Path] = None
    amp: bool = False
    auto_scale_lr: bool = False
    teacher_config: Optional[Path] = None
    teacher_checkpoint: Optional[Path] = None
    cfg_options: tuple[str, ...] = ()
    launcher: str = "none"
    local_rank: int = 0
    verbose: bool = False


@click.command(cls=several_values(CFG_OPTIONS), context_settings=CONTEXT)
@click.version_option(package_name="damo-yolo", prog_name="damo-train")
@click.argument("config", type=click.Path(path_type=Path), required=False)
@click.option("--work-dir", type=click.Path(path_type=Path),
              help="Where logs and checkpoints go [default: the config's work_dir, else work_dirs/<config name>].")
@click.option("--resume", is_flag=False, flag_value="auto", default=None, metavar="[CHECKPOINT]",
              help="Continue training: from the work dir's last checkpoint, or from CHECKPOINT.")
@click.option("--finetune", type=click.Path(path_type=Path), metavar="CHECKPOINT",
              help="Start from this official or project checkpoint's backbone and neck, with a fresh head for the "
                   "config's classes (the config's finetune setting).")
@click.option("--amp", is_flag=True, help="Automatic mixed precision (GPU).")
@click.option("--auto-scale-lr", is_flag=True, help="Scale the lr to the actual total batch size.")
@click.option("--teacher-config", type=click.Path(path_type=Path),
              help="Distil from this teacher's config (with --teacher-checkpoint; the config's teacher setting).")
@click.option("--teacher-checkpoint", type=click.Path(path_type=Path), help="The teacher's checkpoint.")
@click.option(CFG_OPTIONS, "cfg_options", multiple=True, metavar="KEY=VALUE ...", callback=key_values,
              help="Override config settings (mmengine's syntax), e.g. --cfg-options max_epochs=10 "
                   "data_root=data/mine/ input_size=\"(320,320)\".")
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="none", show_default=True,
              help="Job launcher for distributed training (torchrun: pytorch).")
@click.option("--local_rank", "--local-rank", "local_rank", type=int, default=0, hidden=True)  # from old launchers
@click.option("--plot", "plot_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="WORK_DIR",
              help="Draw WORK_DIR's training curves (losses, learning rate, validation mAP by epoch) into "
                   "curves.png beside its newest log, and stop; a run draws them at its end.")
@click.option("--verbose", "-v", is_flag=True,
              help="Show everything mmengine reports (environment, config, hooks, parameter groups); the log file "
                   "in the work dir always has it.")
def cli(plot_dir: Optional[Path] = None, **params: Any) -> None:
    """Train DAMO-YOLO with an mmengine CONFIG (train/configs/*.py).

    \b
        damo-train train/configs/damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py
        damo-train CONFIG --cfg-options max_epochs=8 warmup_epochs=1 no_aug_epochs=2
        damo-train CONFIG --resume                        # the work dir's last checkpoint
        damo-train CONFIG --resume work_dirs/x/epoch_7.pth
        damo-train CONFIG --finetune damoyolo_tinynasL25_S.pth
        torchrun --nproc_per_node 8 -m damo_yolo.tools.train CONFIG --launcher pytorch
        damo-train --plot work_dirs/my_config              # the curves of a run, as a PNG

    \b
    The console shows the metrics (with the run's ETA: iterations, validations and checkpoints to come),
    warnings and a summary at the end (best.pth with its mAP and epoch, latest.pth, the curves' PNG, the
    time); a progress bar on a terminal. Ctrl-C ends with the command that continues the run (exit code
    130). Exit code 1 with a one-line reason when the config, its settings, the data or a checkpoint
    cannot be used.
    """
    if plot_dir is not None:
        if params["config"] is not None:
            raise click.UsageError("--plot draws a finished or running work dir's curves: give it alone")
        click.echo(f"curves: {draw_curves(plot_dir)}")
        return
    if params["config"] is None:
        raise click.UsageError("Missing argument 'CONFIG'.")
    train(TrainArgs(**params))


def draw_curves(work_dir: Path) -> Path:
    """curves.png of ``work_dir`` (damo_yolo.training.plot); a one-line refusal when it has no figures."""
    from damo_yolo.training.plot import NoScalars, plot_curves
    try:
        return plot_curves(work_dir)
    except NoScalars as exc:
        raise click.ClickException(str(exc)) from None


def parse_args(argv: Optional[list[str]] = None) -> TrainArgs:
    """The command line as damo-train reads it (click's usage errors raise)."""
    with cli.make_context("damo-train", list(sys.argv[1:] if argv is None else argv)) as ctx:
        return TrainArgs(**{k: v for k, v in ctx.params.items() if k != "plot_dir"})


def check_paths(args: TrainArgs) -> None:
    """Refuse, in one line, a file named on the command line that is not there (before any heavy import)."""
    from damo_yolo.fileio import missing_file
    problem = missing_file(args.config, "config")
    if problem:
        raise click.ClickException(problem)
    if bool(args.teacher_config) != bool(args.teacher_checkpoint):
        raise click.UsageError("--teacher-config and --teacher-checkpoint go together (distillation needs both)",
                               click.get_current_context(silent=True))
    resume = Path(args.resume) if args.resume not in (None, "auto") else None
    for what, path in (("finetune checkpoint", args.finetune), ("resume checkpoint", resume),
                       ("teacher config", args.teacher_config), ("teacher checkpoint", args.teacher_checkpoint)):
        problem = None if path is None else missing_file(path, what)
        if problem:
            raise click.ClickException(problem)
    if args.work_dir is not None and args.work_dir.exists() and not args.work_dir.is_dir():
        raise click.ClickException(f"--work-dir {args.work_dir} is a file; name a folder")


def build_config(args: TrainArgs):
    from damo_yolo.training.config import load_config
    options = parse_cfg_options(args.cfg_options)
    if args.finetune:
        options["finetune"] = str(args.finetune)
    if args.teacher_config:
        options.update(teacher_config=str(args.teacher_config), teacher_checkpoint=str(args.teacher_checkpoint))
    cfg = load_config(args.config, options)
    cfg.launcher = args.launcher
    import torch
    if not torch.cuda.is_available():  # CPU processes: gloo instead of NCCL, and no SyncBN (CUDA only)
        cfg.env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"
        cfg.sync_bn = None
        if args.launcher != "none":  # DDP over CPU modules takes no device ids
            cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)
    cfg.work_dir = str(args.work_dir or cfg.get("work_dir") or Path("work_dirs") / args.config.stem)
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    if args.resume and cfg.model.get("finetune"):  # every weight comes with the resumed state
        cfg.model.finetune = None
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    return cfg


def check_data(cfg) -> None:
    """Refuse, in one line, a config whose data or checkpoints are not there (before mmengine prints it)."""
    from damo_yolo.data.coco import DataError
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


def interrupted_hint(args: TrainArgs, work_dir: Path) -> str:
    """What to do after Ctrl-C, in one line: the command that continues from the last checkpoint, or that
    there is none yet."""
    import shlex
    last = work_dir / "last_checkpoint"
    if not last.is_file():
        return f"interrupted before the first checkpoint: nothing to resume in {work_dir}"
    command = ["damo-train", str(args.config), *(["--work-dir", str(args.work_dir)] if args.work_dir else []),
               "--resume"]
    if args.teacher_config:
        command += ["--teacher-config", str(args.teacher_config), "--teacher-checkpoint", str(args.teacher_checkpoint)]
    command += ["--amp"] * args.amp + ["--auto-scale-lr"] * args.auto_scale_lr
    command += ["--launcher", args.launcher] if args.launcher != "none" else []  # (under the same launcher)
    command += sum((["--cfg-options", option] for option in args.cfg_options), [])
    return (f"interrupted: {work_dir} holds {Path(last.read_text().strip()).name}; continue with: "
            f"{shlex.join(command)}")


def train(args: TrainArgs) -> None:
    """Check, build and run the training; print its summary. Refusals raise click.ClickException."""
    started = time.monotonic()
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    check_paths(args)
    from damo_yolo.data.coco import DataError
    from damo_yolo.models import CheckpointError
    from damo_yolo.training.config import ConfigError
    try:
        cfg = build_config(args)
        check_data(cfg)
    except (ConfigError, DataError, CheckpointError) as exc:
        raise click.ClickException(str(exc)) from None
    if args.resume == "auto" and not (Path(cfg.work_dir) / "last_checkpoint").is_file():
        raise click.ClickException(f"--resume: no checkpoint to resume in {cfg.work_dir}: train without --resume "
                                   f"to start, or give the --work-dir of the run to continue")
    import torch
    if args.launcher == "pytorch" and not torch.cuda.is_available():
        # mmengine's pytorch launcher selects a CUDA device unconditionally; on CPU hosts join the group
        # with gloo here (torchrun's environment), and the Runner uses the initialised group as it is.
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group(backend="gloo")
    from mmengine.runner import Runner

    from damo_yolo.training.hooks import ProgressBarHook, QuietRunner, run_summary
    progress = ProgressBarHook()
    try:
        runner = (Runner if args.verbose else QuietRunner).from_cfg(cfg)
        runner.register_hook(progress)
        runner.train()
    except (DataError, CheckpointError) as exc:  # found while reading (an annotation file that is not COCO, a
        # fine-tuning checkpoint of another model)
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        progress.close()
        if int(os.environ.get("RANK", "0")) == 0:
            click.echo(interrupted_hint(args, Path(cfg.work_dir)), err=True)
        raise click.exceptions.Exit(130) from None  # the shell's code for a run stopped by Ctrl-C
    finally:
        progress.close()
    if runner.rank == 0:
        click.echo(run_summary(runner, time.monotonic() - started))
        try:
            click.echo(f"curves: {draw_curves(Path(cfg.work_dir))}")
        except Exception as exc:  # a plot is no reason to fail a finished run
            click.echo(f"warning: the curves could not be drawn: {str(exc).splitlines()[0] if str(exc) else exc}",
                       err=True)


def main(argv: Optional[list[str]] = None) -> int:
    """`damo-train` with ``argv`` (default: the command line); returns the exit code (2: a usage error)."""
    return run(cli, argv, "damo-train")


if __name__ == "__main__":
    sys.exit(main())
