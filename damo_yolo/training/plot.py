"""A training run's curves in one PNG: the losses and the learning rate by epoch, and the validation mAP after
each validation, read from the work dir's scalars.json files (mmengine's LocalVisBackend: one per run folder; a
resumed run's figures replace those of the run it continues from the step it resumed at).

    damo-train --plot work_dirs/my_config      # writes curves.png beside the newest run's log, prints its path
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Union

PLOT_NAME = "curves.png"
MAP_KEYS = ("coco/mAP", "coco/mAP_50")


class NoScalars(ValueError):
    """A work dir without any logged figures."""


def read_scalars(work_dir: Union[str, Path]) -> tuple[list[dict], list[dict]]:
    """(training records by step, validation records by epoch) of the runs in ``work_dir`` as one run: each run
    folder in time order, a later run replacing what the earlier ones logged from its own first step (a resumed
    run redoes what came after its checkpoint; a run started afresh in the same folder replaces it all)."""
    work_dir = Path(work_dir)
    files = sorted(work_dir.glob("*/vis_data/scalars.json"))  # run folders are named by their start time
    if not files:
        raise NoScalars(f"{work_dir}: no scalars.json in its run folders (*/vis_data/): is it a damo-train work "
                        f"dir with at least one logged iteration?")
    train: dict[int, dict] = {}
    val: dict[int, dict] = {}
    for path in files:
        run_train: dict[int, dict] = {}
        run_val: dict[int, dict] = {}
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line the run was writing when it was killed
                continue
            if "loss" in record and "step" in record:
                run_train[int(record["step"])] = record
            elif any(key in record for key in MAP_KEYS) and "step" in record:
                run_val[int(record["step"])] = record  # a validation's step is its epoch
        if run_train:
            first_step = min(run_train)
            first_epoch = int(run_train[first_step].get("epoch", 1))  # the epoch this run started in
            train = {k: v for k, v in train.items() if k < first_step}
            val = {k: v for k, v in val.items() if k < first_epoch}
        train.update(run_train)
        val.update(run_val)
    return [train[k] for k in sorted(train)], [val[k] for k in sorted(val)]


def iterations_per_epoch(work_dir: Path, train: list[dict]) -> float:
    """Iterations an epoch has, from mmengine's log lines (``Epoch(train) [3][450/462]``); else estimated from
    the steps logged in the first epoch (the epoch's last iterations may go unlogged)."""
    import re
    for log in sorted(work_dir.glob("*/*.log"), reverse=True):
        with log.open(errors="replace") as f:
            for line in f:
                found = re.search(r"Epoch\(train\)\s*\[\d+\]\[\s*\d+/(\d+)\]", line)
                if found:
                    return float(found[1])
    first = [r["step"] for r in train if r.get("epoch") == train[0].get("epoch")] if train else []
    return max(first) / max(1, train[0].get("epoch", 1)) if first else 1.0


def plot_curves(work_dir: Union[str, Path], out: Union[str, Path, None] = None) -> Path:
    """Draw the run's curves into ``out`` (default: curves.png beside the newest run's log); its path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    work_dir = Path(work_dir)
    train, val = read_scalars(work_dir)
    if out is None:
        logs = sorted(work_dir.glob("*/*.log"))
        out = (logs[-1].parent if logs else work_dir) / PLOT_NAME
    out = Path(out)
    per_epoch = iterations_per_epoch(work_dir, train)

    fig, (losses, lr, mean_ap) = plt.subplots(3, 1, figsize=(8, 9), sharex=True, constrained_layout=True)
    fig.suptitle(f"{work_dir.name}: training")
    if train:
        epochs = [r["step"] / per_epoch for r in train]
        for key in sorted({k for r in train for k in r if k.startswith("loss")}):
            losses.plot(epochs, [r.get(key, float("nan")) for r in train], label=key, lw=1.2 if key == "loss" else 0.8)
        losses.legend(fontsize=8)
        lr.plot(epochs, [r.get("lr", float("nan")) for r in train], color="tab:purple")
    losses.set_ylabel("loss (smoothed)")
    lr.set_ylabel("learning rate")
    for key, marker in zip(MAP_KEYS, ("o", "s")):
        points = [(r["step"], r[key]) for r in val if key in r]
        if points:
            mean_ap.plot(*zip(*points), marker=marker, label=key.split("/")[-1])
    if val:
        best = max(val, key=lambda r: r.get(MAP_KEYS[0], -1.0))
        mean_ap.annotate(f"best {best[MAP_KEYS[0]]:.4f}", (best["step"], best[MAP_KEYS[0]]),
                         textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8)
        mean_ap.legend(fontsize=8)
    else:
        mean_ap.text(0.5, 0.5, "no validation yet", ha="center", va="center", transform=mean_ap.transAxes)
    mean_ap.set_ylabel("validation mAP")
    mean_ap.set_xlabel("epoch")
    for ax in (losses, lr, mean_ap):
        ax.grid(alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
