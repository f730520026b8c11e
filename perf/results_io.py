"""What every benchmark under perf/ starts and ends with: the time and the machine (its CPU's ISA, since figures
differ from one CPU to the next) at the head of its results, and the results written as JSON and Markdown."""
from __future__ import annotations

import json
import time
from pathlib import Path


def new_results(**fields) -> dict:
    """A benchmark's results, headed by when and on what it ran."""
    from damo_yolo.serving.resources import cpu_isa
    return {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": cpu_isa(), **fields}


def save(out: Path, stem: str, results: dict, report: str) -> Path:
    """``results`` as out/stem.json and ``report`` as out/stem.md; the Markdown's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{stem}.md").write_text(report)
    return out / f"{stem}.md"
