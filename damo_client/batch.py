"""Folders and globs of images through the server, resumable: one JSON result per image in a results folder, each
written whole or not at all (a temporary file, flushed to disk, renamed over its name), so a run stopped at any
moment — Ctrl-C, a crash, SIGKILL — and started again sends only the images without a result, and in the end every
image has exactly one complete result.

    from damo_client.batch import detect_folder
    summary = detect_folder(["photos/", "more/**/*.jpg"], "results/", url="localhost:8001", protocol="grpc")
    print(summary.line())  # 500 images: 380 answered, 120 already had results, 0 failed, 31.2 images/s

An image's result is ``RESULTS/<its path under the folder or glob base>.json`` (``photos/a/b.jpg`` →
``results/a/b.jpg.json``): {"file": the image's path, "detections": [{"box": [x1, y1, x2, y2], "score",
"class_id", "class_name"}]}. An image the server refuses gets no result (its error is reported): a rerun tries it
again.
"""
from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, Union

from damo_client.errors import DamoClientError, ImageError, ServerUnavailable
from damo_client.images import IMAGE_SUFFIXES
from damo_client.video import detection_record

if TYPE_CHECKING:
    from damo_client.client import AsyncDamoClient

IN_FLIGHT = 8  # requests outstanding: the server's max batch, so its dynamic batcher can fill a batch
RESULT_SUFFIX = ".json"
PARTIAL_SUFFIX = ".partial"  # a result being written; one left by a killed run is removed by the next
LOCK_NAME = ".damo-client.lock"
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class Job:
    image: Path
    result: Path  # where its result goes


def is_glob(pattern: Union[str, os.PathLike]) -> bool:
    return any(c in str(pattern) for c in GLOB_CHARACTERS)


def _glob_base(pattern: str) -> Path:
    """The folder a glob's matches are named under: its leading part without wildcards."""
    parts = Path(pattern).parts
    literal = [p for p in parts[:next((i for i, p in enumerate(parts) if is_glob(p)), len(parts))]]
    return Path(*literal) if literal else Path(".")


def plan(paths: Iterable[Union[str, os.PathLike]], results_dir: Union[str, Path]) -> list[Job]:
    """The images of ``paths`` (files; folders: their .jpg/.jpeg/.png files, not descending; globs, ``**``
    descending) with their result files under ``results_dir``. Raises ImageError for a path that names nothing
    and ValueError when two images would share a result file."""
    results_dir = Path(results_dir)
    jobs: list[Job] = []
    for given in paths:
        given = str(given)
        if is_glob(given) and not Path(given).exists():
            base = _glob_base(given)
            matches = sorted(Path(m) for m in glob.glob(given, recursive=True))
            images = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                raise ImageError(f"{given}: matches no .jpg/.jpeg/.png image")
            jobs += [Job(m, results_dir / (str(m.relative_to(base)) + RESULT_SUFFIX)) for m in images]
        elif Path(given).is_dir():
            folder = Path(given)
            images = [f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                raise ImageError(f"{given}: no .jpg/.jpeg/.png images in this folder (a glob such as "
                                 f"'{folder}/**/*.jpg' descends into its subfolders)")
            jobs += [Job(f, results_dir / (f.name + RESULT_SUFFIX)) for f in images]
        elif Path(given).is_file():
            jobs.append(Job(Path(given), results_dir / (Path(given).name + RESULT_SUFFIX)))
        else:
            raise ImageError(f"{given}: no such file or folder")
    owners: dict[Path, Path] = {}
    for job in jobs:
        other = owners.setdefault(job.result, job.image)
        if other != job.image:
            raise ValueError(f"{other} and {job.image} would both write {job.result}: give them in separate runs "
                             f"or from their common folder")
    return list({job.image: job for job in jobs}.values())  # an image given twice is one job


def has_result(job: Job) -> bool:
    """Whether ``job``'s result file holds a complete result of that image (a rename only ever puts whole files
    there; this also refuses one damaged since, or one of another image that had the name)."""
    try:
        record = json.loads(job.result.read_text())
        return isinstance(record.get("detections"), list) and record.get("file") == str(job.image)
    except (OSError, ValueError, AttributeError):
        return False


def write_atomically(path: Path, text: str) -> None:
    """``text`` at ``path`` whole or not at all: written to a new file beside it, flushed to the disk, renamed
    over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=PARTIAL_SUFFIX)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


class ResultsError(DamoClientError):
    """The results folder cannot be written (full, read-only) or another run is writing into it."""


@contextlib.contextmanager
def results_lock(results_dir: Path) -> Iterator[None]:
    """One run at a time writes into a results folder: an exclusive lock on its ``.lock`` file, which the
    system releases when the holder dies, however it dies."""
    import fcntl
    results_dir.mkdir(parents=True, exist_ok=True)
    with open(results_dir / LOCK_NAME, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ResultsError(f"another run is writing results into {results_dir}: wait for it to end, or give "
                               f"another --results-dir") from None
        yield


def remove_partials(results_dir: Path) -> int:
    """Remove what killed runs left half-written; how many."""
    removed = 0
    for partial in results_dir.rglob(f"*{PARTIAL_SUFFIX}") if results_dir.is_dir() else ():
        partial.unlink(missing_ok=True)
        removed += 1
    return removed


@dataclass
class BatchSummary:
    images: int = 0
    answered: int = 0
    skipped: int = 0  # had a result from an earlier run
    failed: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)  # (image, reason)

    def line(self) -> str:
        rate = self.answered / self.seconds if self.seconds else 0.0
        return (f"{self.images} images: {self.answered} answered, {self.skipped} already had results, "
                f"{self.failed} failed, {rate:.1f} images/s")


async def detect_folder_async(client: "AsyncDamoClient", paths: Iterable[Union[str, os.PathLike]],
                              results_dir: Union[str, Path], score_threshold: Optional[float] = None,
                              iou_threshold: Optional[float] = None, in_flight: int = IN_FLIGHT,
                              on_image: Callable[[Job, Optional[str]], None] = lambda job, error: None,
                              redo: bool = False,
                              on_plan: Callable[[list[Job], int], None] = lambda jobs, done: None) -> BatchSummary:
    """Every image of ``paths`` without a result in ``results_dir`` (all of them with ``redo``) through
    ``client``, ``in_flight`` requests outstanding, each result written as its answer comes. ``on_plan`` is told
    the images (Jobs) and how many of them already have a result before any is sent (a progress bar's start);
    ``on_image`` each image done (error None) or failed (the reason). Raises ImageError or ValueError as ``plan``
    does. Stops with ServerUnavailable when the server cannot be
    reached and ResultsError when the folder cannot be written or another run writes into it (what was answered
    is kept)."""
    results_dir = Path(results_dir)
    jobs = plan(paths, results_dir)
    with results_lock(results_dir):
        remove_partials(results_dir)  # safe under the lock: no other run is writing
        return await _run_jobs(client, jobs, score_threshold, iou_threshold, in_flight, on_image, redo, on_plan)


async def _run_jobs(client: "AsyncDamoClient", jobs: list[Job], score_threshold: Optional[float],
                    iou_threshold: Optional[float], in_flight: int, on_image: Callable[[Job, Optional[str]], None],
                    redo: bool, on_plan: Callable[[list[Job], int], None]) -> BatchSummary:
    summary = BatchSummary(images=len(jobs))
    todo = [job for job in jobs if redo or not has_result(job)]
    summary.skipped = len(jobs) - len(todo)
    on_plan(jobs, summary.skipped)
    start = time.perf_counter()
    queue = iter(todo)

    async def worker() -> None:
        for job in queue:  # the workers share one iterator: each image is taken once
            try:
                data = await asyncio.to_thread(job.image.read_bytes)
                detections = await client.detect(data, score_threshold, iou_threshold)
            except OSError as exc:
                error: Optional[str] = f"cannot read it ({exc.strerror})"
            except (ServerUnavailable, ResultsError):
                raise
            except DamoClientError as exc:
                error = str(exc).splitlines()[0]
            else:
                record: dict[str, Any] = {"file": str(job.image),
                                          "detections": [detection_record(d) for d in detections]}
                try:
                    await asyncio.to_thread(write_atomically, job.result, json.dumps(record) + "\n")
                except OSError as exc:  # the folder, not the image: every other write would fail alike
                    raise ResultsError(f"cannot write {job.result}: {exc.strerror or exc}") from None
                summary.answered += 1
                on_image(job, None)
                continue
            summary.failed += 1
            summary.failures.append((job.image, error))
            on_image(job, error)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(in_flight, len(todo)))]
    try:
        await asyncio.gather(*workers)  # the first error (the server unreachable) stops them all
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    summary.seconds = time.perf_counter() - start
    return summary


def detect_folder(paths: Iterable[Union[str, os.PathLike]], results_dir: Union[str, Path], url: Optional[str] = None,
                  protocol: str = "grpc", model: str = "damo_yolo", **options: Any) -> BatchSummary:
    """``detect_folder_async`` with its own AsyncDamoClient (``url``, ``protocol``, ``model``)."""
    from damo_client.client import AsyncDamoClient

    async def run() -> BatchSummary:
        async with AsyncDamoClient(url, protocol, model) as client:
            return await detect_folder_async(client, paths, results_dir, **options)

    return asyncio.run(run())
