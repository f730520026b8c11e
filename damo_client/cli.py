"""`damo-client`: detections, health and latency of a DAMO-YOLO model served by Triton."""
from __future__ import annotations

import json
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, TypeVar

import click

from damo_client.client import AsyncDamoClient, DamoClient, default_url
from damo_client.errors import ContractError, DamoClientError, ImageError, InferenceError, RestrictedAPI
from damo_client.images import expand_paths, to_bytes
from damo_client.results import coco_row
from damo_yolo import contract as C

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
CommandFunction = TypeVar("CommandFunction", bound=Callable[..., None])


def _connection_options(fn: CommandFunction) -> CommandFunction:
    fn = click.option("--model", "-m", default="damo_yolo", show_default=True, envvar="DAMO_MODEL",
                      help="Model name on the server.")(fn)
    fn = click.option("--timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
                      help="Seconds to wait for an answer.")(fn)
    fn = click.option("--protocol", "-p", type=click.Choice(["http", "grpc"]), default="http", show_default=True,
                      envvar="DAMO_PROTOCOL")(fn)
    fn = click.option("--url", "-u", envvar="DAMO_URL",
                      help="Server host:port [default: 127.0.0.1:8000 for http, :8001 for grpc; env DAMO_URL]; "
                           "with grpc also dns:///NAME:PORT (every address of NAME, e.g. a headless Service, "
                           "balanced per request) or ipv4:ADDR:PORT,ADDR:PORT.")(fn)
    return fn


def _client(url: Optional[str], protocol: str, model: str, timeout: float, **kwargs: int) -> DamoClient:
    try:
        return DamoClient(url or default_url(protocol), protocol, model, timeout=timeout, **kwargs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--url'") from exc


def _async_client(url: Optional[str], protocol: str, model: str, timeout: float) -> AsyncDamoClient:
    try:
        return AsyncDamoClient(url or default_url(protocol), protocol, model, timeout=timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--url'") from exc


def _fail(exc: Exception) -> NoReturn:
    raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _describe_export(client: DamoClient) -> None:
    """The repository's own account (damo_yolo release, target, precision; TensorRT and GPU of a GPU plan),
    and a warning when its plan was built with another TensorRT than the serving container's."""
    from damo_yolo.serving.platform import TENSORRT, platform_warnings
    info, serving = client.export_info, client.serving
    if not info and serving is None:
        return
    parts = [f"damo_yolo {info.get('damo_yolo', '?')}", f"target {info.get('target', '?')}"]
    parts += [f"variant {info['variant']}"] if "variant" in info else []
    parts += [f"precision {serving.precision}"] if serving is not None else []
    parts += [f"runtime {serving.runtime}"] if serving is not None and serving.plan_score_threshold is None else []
    if "tensorrt" in info:
        gpu = info.get("gpu", {})
        parts.append(f"TensorRT {info['tensorrt']} on {gpu.get('name', '?')} "
                     f"(compute {gpu.get('compute_capability', '?')})")
    click.echo("exported: " + ", ".join(parts))
    choice = info.get("runtime_choice")
    if choice:
        timings = ", ".join(f"{name} {ms:.1f} ms" for name, ms in choice.get("median_ms", {}).items())
        fp32 = f", FP32 {choice['fp32_onnxruntime_ms']:.1f} ms" if "fp32_onnxruntime_ms" in choice else ""
        if choice.get("served") == "fp32" and fp32:
            click.echo(f"FP32 served: INT8 gained nothing on {choice.get('cpu', '?')} ({timings}{fp32} per image; "
                       f"export with --cpu-runtime NAME to serve the INT8 anyway)")
        else:
            click.echo(f"runtime chosen at export: {choice.get('chosen')}, the faster on {choice.get('cpu', '?')} "
                       f"({timings}{fp32} per image)")
    quantization = info.get("quantization", {})
    if "layout" in quantization and quantization.get("served", True):
        click.echo(f"INT8: {quantization['layout']} layout, calibrated on {quantization.get('calibration_images')} "
                   f"images" + ("; 7-bit weights (reduce_range)" if quantization.get("reduce_range") else ""))
    accuracy = quantization.get("accuracy")
    if accuracy:
        floats = accuracy.get("float_layers", [])
        click.echo(f"INT8 accuracy on {accuracy.get('validation')}: mAP {accuracy['int8_map']:.4f} against FP32 "
                   f"{accuracy['fp32_map']:.4f} (budget {100 * accuracy['budget']:.2f} points); "
                   + (f"{len(floats)} layer(s) kept in float: {', '.join(floats)}" if floats else "every layer INT8"))
    if serving is not None:
        click.echo(f"served defaults (a request's thresholds override them): {serving.summary()}")
    for problem in platform_warnings(info):
        click.echo(f"warning: {problem} (serving container TensorRT {TENSORRT})", err=True)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="damo-yolo", prog_name="damo-client")
def cli() -> None:
    """Call a DAMO-YOLO detector served by Triton Inference Server.

    \b
    Start the server first:   tritonserver --model-repository triton_models
    Then:
        damo-client health
        damo-client detect bus.jpg zidane.jpg --save-dir annotated/ --json detections.json
        damo-client detect photos/ --protocol grpc --score-thr 0.4
        damo-client models
        damo-client perf --images photos/ --concurrency 1:8:1 --csv perf.csv --plot perf.png
        damo-client evaluate annotations/instances_val.json val/      # COCO mAP of the served model
    """


def _float_range(interval: C.Interval) -> click.FloatRange:
    return click.FloatRange(interval.low, interval.high, min_open=interval.low_open, max_open=interval.high_open)


def _image_id(path: Path, index: int) -> int:
    """COCO image ids: the number in a COCO-style file name (000000000520.jpg → 520), else the position."""
    match = re.search(r"(\d+)$", path.stem)
    return int(match.group(1)) if match else index


@cli.command(context_settings=CONTEXT)
@click.argument("sources", nargs=-1, required=True)
@_connection_options
@click.option("--score-thr", type=_float_range(C.SCORE_RANGE),
              help=f"Score threshold for this call [default: the repository's, {C.SERVING_SCORE_THRESHOLD:g} as "
                   f"damo-export writes it; `damo-client models` shows it].")
@click.option("--iou-thr", type=_float_range(C.IOU_RANGE),
              help="NMS IoU threshold for this call [default: the repository's, the checkpoint's IoU; "
                   "`damo-client models` shows it].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write COCO-results-style JSON (image_id, category_id = class id, bbox xywh, score).")
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --json: the COCO annotations file the images belong to; image_id is the id it gives the "
                   "image's file name, category_id the id of the class's name, so pycocotools loads the results "
                   "as they are.")
@click.option("--save-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write copies of the images with labelled boxes here.")
@click.option("--quiet", "-q", is_flag=True,
              help="No per-image tables (without --json or --save-dir: one summary line instead).")
@click.option("--track", is_flag=True, help="Videos: track IDs that persist across frames (in the client).")
@click.option("--in-flight", type=click.IntRange(min=1, max=64), default=8, show_default=True,
              help="Videos and --results-dir: requests outstanding at once (the server batches them).")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Images: one JSON result per image here, each written whole; run again, only the images "
                   "without a result are sent (resumes a stopped run).")
@click.option("--redo", is_flag=True, help="With --results-dir: send every image again, replacing its result.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help="Live streams: stop after this many seconds [default: at Ctrl-C, or when every stream is given "
                   "up].")
@click.option("--frames-as", type=click.Choice(("auto", "raw", "jpeg")), default="auto", show_default=True,
              help="Videos and streams: send frames as decoded pixels (raw: no JPEG work on either side, ten times "
                   "the bytes; CPU-target models) or JPEG; auto: raw to a server on this host that takes it.")
@click.option("--reconnects", type=click.IntRange(min=0),
              help="Live streams: attempts to reopen a lost stream before giving it up [default: for ever].")
def detect(sources: tuple[str, ...], url: Optional[str], protocol: str, model: str, timeout: float,
           score_thr: Optional[float], iou_thr: Optional[float], json_path: Optional[Path],
           annotations: Optional[Path], save_dir: Optional[Path], quiet: bool, track: bool, in_flight: int,
           results_dir: Optional[Path], redo: bool, duration: Optional[float], reconnects: Optional[int],
           frames_as: str) -> None:
    """Detect objects in images (files, folders or quoted globs such as 'photos/**/*.jpg' of .jpg/.jpeg/.png),
    videos (.mp4 .mkv .avi .mov .webm .ts) and live streams (rtsp:// http(s):// udp:// ... or /dev/videoN).

    \b
    Prints a table per image. With --results-dir: one JSON per image (DIR/NAME.jpg.json), several requests
    at once and a progress bar; a run stopped at any moment and started again sends only what has no result.
    A video's frames all go to the server, several at a time, answered in frame order; with --save-dir it
    writes NAME.annotated.mp4 (the source's frame rate), NAME.jsonl (a line per frame) and NAME.mot.txt
    (MOTChallenge); --track adds track IDs. Live streams run together until --duration or Ctrl-C: the newest
    frame of each is sent when a request slot frees (older ones dropped and counted), the slots shared fairly,
    a lost stream reopened with backoff; outputs as for videos. Exit code 0 when every image and video was
    answered; 1 (with the reasons on stderr) when any failed or the server cannot be reached.
    """
    from damo_client.stream import is_stream
    from damo_client.video import is_video
    streams = [s for s in sources if is_stream(s)]
    paths = tuple(Path(s) for s in sources if s not in streams)
    if annotations is not None and json_path is None:
        raise click.UsageError("--annotations gives --json's ids: give --json FILE too")
    if (duration is not None or reconnects is not None) and not streams:
        raise click.UsageError("--duration and --reconnects are for live streams (rtsp://, udp://, /dev/video0, ...)")
    if streams:
        if paths:
            raise click.UsageError("live streams run until --duration or Ctrl-C: give files in another command")
        if results_dir is not None or json_path is not None:
            raise click.UsageError("a live stream's detections go to --save-dir (NAME.jsonl, a line per frame)")
        if _detect_streams(streams, url, protocol, model, timeout, score_thr, iou_thr, save_dir, quiet, track,
                           in_flight, duration, reconnects, frames_as):
            raise click.ClickException("a stream was given up (its reason above)")
        return
    if redo and results_dir is None:
        raise click.UsageError("--redo replaces the results of --results-dir DIR: give the folder")
    if results_dir is not None and save_dir is not None:
        raise click.UsageError("--results-dir writes a JSON per image; --save-dir's annotated copies are for runs "
                               "without it (or videos)")
    videos = [p for p in paths if is_video(p)]
    if track and not videos:
        raise click.UsageError("--track follows objects across a video's frames: give a video file")
    stems = [p.stem for p in videos]
    if save_dir is not None and len(set(stems)) < len(stems):
        raise click.UsageError("two videos share a name (their outputs in --save-dir would overwrite each other): "
                               + ", ".join(sorted({str(p) for p in videos if stems.count(p.stem) > 1})))
    if videos and json_path is not None:
        click.echo("note: --json holds the images' detections; a video's go to NAME.jsonl with --save-dir", err=True)
    video_failures = 0
    if videos:
        video_failures = _detect_videos(videos, url, protocol, model, timeout, score_thr, iou_thr, save_dir, quiet,
                                        track, in_flight, frames_as)
        paths = tuple(p for p in paths if p not in videos)
        if not paths:
            if video_failures:
                raise click.ClickException(f"{video_failures} of {len(videos)} video(s) failed")
            return
    if results_dir is not None:
        failures = _detect_folder(paths, results_dir, url, protocol, model, timeout, score_thr, iou_thr, quiet,
                                  in_flight, redo, json_path, annotations)
        if failures or video_failures:
            failed = ([f"{video_failures} of {len(videos)} video(s)"] if video_failures else []) + \
                ([f"{failures} image(s)"] if failures else [])
            raise click.ClickException(" and ".join(failed) + " failed (a rerun sends the failed images again)")
        return
    files = expand_paths(paths)
    if not files:
        raise click.ClickException(f"no .jpg/.jpeg/.png images in {', '.join(map(str, paths))}")
    results: list[dict] = []
    failures = answered = 0
    with _client(url, protocol, model, timeout) as client:
        try:
            client.connect()
            coco_ids = _coco_ids(annotations, client.class_names)
        except DamoClientError as exc:
            _fail(exc)
        for index, path in enumerate(files):
            try:
                image_id = _listed_id(coco_ids, path, index)
                data = to_bytes(path)
                detections = client.detect(data, score_thr, iou_thr)
            except ImageError as exc:
                failures += 1
                click.echo(_naming(path, exc), err=True)
                continue
            except DamoClientError as exc:
                failures += 1
                click.echo(f"{path}: {str(exc).splitlines()[0]}", err=True)
                if "cannot reach the server" in str(exc):
                    break
                continue
            answered += 1
            if not quiet:
                click.echo(f"{path}: {len(detections)} detection(s)")
                from damo_client.results import format_table
                click.echo(format_table(detections))
            if image_id is not None:
                rows = coco_ids.rows(image_id, detections) if coco_ids is not None else \
                    [d.to_coco(image_id) for d in detections]
                results.extend(dict(row, category_name=d.class_name, file_name=path.name)
                               for row, d in zip(rows, detections))
            if save_dir is not None:
                from damo_client.draw import save_annotated
                save_annotated(data, detections, save_dir / f"{path.stem}.jpg")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text("[\n" + ",\n".join(json.dumps(r) for r in results) + "\n]\n")
        click.echo(f"{len(results)} detections written to {json_path}")
    if save_dir is not None:
        click.echo(f"annotated images in {save_dir}")
    if quiet and json_path is None and save_dir is None:  # say what came back, since it went nowhere else
        click.echo(f"{answered} of {len(files)} image(s) answered, {len(results)} detection(s) "
                   f"(-q hides the tables; --json or --save-dir keep the detections)")
    if failures or video_failures:
        failed = ([f"{video_failures} of {len(videos)} video(s)"] if video_failures else []) + \
            ([f"{failures} of {len(files)} image(s)"] if failures else [])
        raise click.ClickException(" and ".join(failed) + " failed")


def _naming(path: Path, exc: Exception) -> str:
    """An image's error in one line that names the image."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if str(path) in text else f"{path}: {text}"


def _coco_ids(annotations: Optional[Path], class_names: list[str]) -> Any:
    """The ids of --annotations for the served classes (None without it); a note when it names not all."""
    if annotations is None:
        return None
    from damo_client.evaluation import CocoIds
    ids = CocoIds.load(annotations, class_names)
    if ids.unmatched:
        click.echo(ids.mapping_note(), err=True)
    return ids


def _listed_id(coco_ids: Any, path: Path, index: int) -> Optional[int]:
    """An image's COCO id: from --annotations (None, said on stderr, for an image it does not list: detected,
    left out of --json), else from its file name or position."""
    if coco_ids is None:
        return _image_id(path, index)
    try:
        return coco_ids.image_id(path)
    except ImageError as exc:
        click.echo(f"{exc}; left out of --json", err=True)
        return None


def _detect_folder(paths: tuple[Path, ...], results_dir: Path, url: Optional[str], protocol: str, model: str,
                   timeout: float, score_thr: Optional[float], iou_thr: Optional[float], quiet: bool, in_flight: int,
                   redo: bool, json_path: Optional[Path], annotations: Optional[Path] = None) -> int:
    """Images into --results-dir (damo_client.batch), a progress bar on stderr where rich is installed, each
    failure named in one line, a summary; returns how many failed."""
    import asyncio
    import contextlib

    from damo_client.batch import BatchSummary, Job, detect_folder_async, has_result
    try:
        bar: Any = _progress_bar("images", quiet)
    except ImportError:  # the video extra brings rich; without it, the summary alone
        bar = contextlib.nullcontext()
    jobs: list[Job] = []
    checked_ids: list = []  # --annotations' ids, checked against the served classes before any image is sent

    async def run() -> "BatchSummary":
        async with _async_client(url, protocol, model, timeout) as client:
            if annotations is not None:
                await client.connect()
                checked_ids.append(_coco_ids(annotations, client.class_names))
            with bar:
                task = None

                def planned(planned_jobs: list[Job], done: int) -> None:
                    nonlocal task
                    jobs.extend(planned_jobs)
                    if hasattr(bar, "add_task"):
                        task = bar.add_task("images", total=len(planned_jobs), completed=done)

                def finished(job: Job, error: Optional[str]) -> None:
                    if error is not None:  # above the bar (rich takes over stderr while it shows)
                        click.echo(f"{job.image}: {error}", err=True)
                    if task is not None:
                        bar.update(task, advance=1)
                return await detect_folder_async(client, paths, results_dir, score_thr, iou_thr, in_flight,
                                                 on_image=finished, redo=redo, on_plan=planned)

    try:
        summary = asyncio.run(run())
    except ImageError as exc:
        raise click.ClickException(str(exc)) from None
    except DamoClientError as exc:
        _fail(exc)
    except ValueError as exc:  # two images would write one result
        raise click.UsageError(str(exc)) from None
    click.echo(f"{summary.line()}; results in {results_dir}")
    if json_path is not None:
        rows = []
        coco_ids = checked_ids[0] if checked_ids else None
        for index, job in enumerate(jobs):
            if not has_result(job):
                continue
            image_id = _listed_id(coco_ids, job.image, index)
            if image_id is None:
                continue
            for d in json.loads(job.result.read_text())["detections"]:
                category = coco_ids.categories[d["class_id"]] if coco_ids is not None else d["class_id"]
                rows.append(dict(coco_row(image_id, category, d["box"], d["score"]),
                                 category_name=d["class_name"], file_name=job.image.name))
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
        click.echo(f"{len(rows)} detections of every result in {results_dir} written to {json_path}")
    return summary.failed


def _detect_streams(streams: list[str], url: Optional[str], protocol: str, model: str, timeout: float,
                    score_thr: Optional[float], iou_thr: Optional[float], save_dir: Optional[Path], quiet: bool,
                    track: bool, in_flight: int, duration: Optional[float], reconnects: Optional[int],
                    frames_as: str = "auto") -> bool:
    """Live streams together (damo_client.stream): a line per stream on stderr (frames, dropped, frames/s,
    reconnects), its events above them, a summary line each at the end; True when any failed."""
    import asyncio
    try:
        from rich.console import Console
        from rich.progress import Progress, TextColumn, TimeElapsedColumn

        from damo_client.stream import StreamSummary, detect_streams_async, display_name
    except ImportError as exc:
        raise click.ClickException(f"live streams need the video extra ({exc.name} is missing): "
                                   f"pip install 'damo-yolo[video]'") from None
    from damo_client.video import FrameResult

    columns = (TextColumn("{task.description}"), TextColumn("{task.completed:.0f} frames"),
               TextColumn("{task.fields[dropped]} dropped"), TextColumn("{task.fields[fps]:.1f} frames/s"),
               TextColumn("{task.fields[state]}"), TimeElapsedColumn())
    bar = Progress(*columns, console=Console(stderr=True), disable=quiet)
    shown = [display_name(s) for s in streams]  # no password on screen
    tasks = {name: bar.add_task(name, total=None, dropped=0, fps=0.0, state="opening") for name in shown}
    started = time.monotonic()

    def frame(summary: StreamSummary, result: FrameResult) -> None:
        bar.update(tasks[summary.source], completed=summary.frames, dropped=summary.dropped,
                   fps=summary.frames / max(time.monotonic() - started, 1e-9))

    def event(source: str, what: str) -> None:
        click.echo(f"{source}: {what}", err=True)
        state = what.split(" (")[0].split(";")[0]
        bar.update(tasks[source], state=state if not state.startswith("frame") else "")

    async def run() -> list[StreamSummary]:
        client = _async_client(url, protocol, model, timeout)
        loop, stop = asyncio.get_running_loop(), asyncio.Event()

        def interrupted() -> None:  # Ctrl-C ends a live run normally; a second one stops at once
            stop.set()
            loop.remove_signal_handler(signal.SIGINT)

        loop.add_signal_handler(signal.SIGINT, interrupted)
        async with client:
            await client.connect()
            with bar:
                return await detect_streams_async(client, streams, score_thr, iou_thr, track=track,
                                                  save_dir=save_dir, in_flight=in_flight, seconds=duration,
                                                  reconnect_attempts=reconnects, on_frame=frame, on_event=event,
                                                  frame_format=frames_as, stop=stop)

    try:
        summaries = asyncio.run(run())
    except DamoClientError as exc:
        _fail(exc)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    for summary in summaries:
        click.echo(f"{summary.source}: {summary.line()}")
        for written in summary.outputs:
            click.echo(f"  wrote {written}")
    return any(summary.error for summary in summaries)


def _detect_videos(videos: list[Path], url: Optional[str], protocol: str, model: str, timeout: float,
                   score_thr: Optional[float], iou_thr: Optional[float], save_dir: Optional[Path], quiet: bool,
                   track: bool, in_flight: int, frames_as: str = "auto") -> int:
    """Each video through the server (damo_client.video), a progress bar each on stderr, a summary line after;
    returns how many failed (each named on stderr in one line)."""
    import asyncio
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from damo_client.video import VideoError, detect_video_async, frame_count
    except ImportError as exc:
        raise click.ClickException(f"videos need the video extra ({exc.name} is missing): "
                                   f"pip install 'damo-yolo[video]'") from None
    import av


    async def run() -> int:
        failed = 0
        async with _async_client(url, protocol, model, timeout) as client:
            for path in videos:
                columns = (TextColumn(path.name), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                           TextColumn("{task.fields[fps]:.1f} frames/s"), TimeElapsedColumn())
                with Progress(*columns, console=Console(stderr=True), disable=quiet) as bar:
                    task = bar.add_task(path.name, total=frame_count(path) if path.is_file() else None, fps=0.0)
                    started = time.perf_counter()

                    def advance(result: object) -> None:
                        done = bar.tasks[0].completed + 1
                        bar.update(task, advance=1, fps=done / max(time.perf_counter() - started, 1e-9))
                    try:
                        summary = await detect_video_async(client, path, score_thr, iou_thr, track=track,
                                                           save_dir=save_dir, in_flight=in_flight, on_frame=advance,
                                                           frame_format=frames_as)
                    except (VideoError, DamoClientError, OSError, ValueError, RuntimeError, av.FFmpegError) as exc:
                        failed += 1
                        click.echo(f"{path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                                   err=True)
                        continue
                click.echo(f"{path}: {summary.line()}")
                for written in summary.outputs:
                    click.echo(f"  wrote {written}")
        return failed

    return asyncio.run(run())


@cli.command(context_settings=CONTEXT)
@click.argument("annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_connection_options
@click.option("--thresholds", type=click.Choice(("served", "evaluation")), default="served", show_default=True,
              help="served: the repository's defaults, as users are answered; evaluation: the checkpoint's "
                   "evaluation thresholds the repository records (a low score threshold: the whole "
                   "precision-recall curve, as training's evaluation sees it).")
@click.option("--score-thr", type=_float_range(C.SCORE_RANGE), help="Score threshold, over --thresholds'.")
@click.option("--iou-thr", type=_float_range(C.IOU_RANGE), help="NMS IoU threshold, over --thresholds'.")
@click.option("--in-flight", type=click.IntRange(min=1, max=64), default=8, show_default=True,
              help="Requests outstanding at once (the server batches them).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the metrics (the 12 figures, AP per class, thresholds) as JSON.")
@click.option("--results", "results_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the detections scored, as COCO results with the file's ids.")
def evaluate(annotations: Path, images_dir: Path, url: Optional[str], protocol: str, model: str, timeout: float,
             thresholds: str, score_thr: Optional[float], iou_thr: Optional[float], in_flight: int,
             json_path: Optional[Path], results_path: Optional[Path]) -> None:
    """COCO mAP of the served model on a COCO set: every image of ANNOTATIONS (found in IMAGES_DIR by its
    file_name) through the server, scored with pycocotools.

    \b
    Prints pycocotools' 12 figures (AP, AP50, AP75, by size, AR; n/a where the set has no object of that
    size) and AP per class. Image ids come from the file's names, category ids from the class names.
    Exit code 1 when an image cannot be read or is refused (it is named), or the server cannot answer.
    """
    import asyncio

    from damo_client.evaluation import Metrics, evaluate_async
    try:
        bar: Any = _progress_bar("images")
    except ImportError:
        bar = None

    def note(text: str) -> None:
        click.echo(text, err=True)

    async def run() -> Metrics:
        async with _async_client(url, protocol, model, timeout) as client:
            if bar is None:
                return await evaluate_async(client, annotations, images_dir, thresholds, score_thr, iou_thr,
                                            in_flight, on_note=note)
            with bar:  # its line shows once the file is read and its images counted
                tasks: list = []
                return await evaluate_async(client, annotations, images_dir, thresholds, score_thr, iou_thr,
                                            in_flight, on_image=lambda: bar.update(tasks[0], advance=1),
                                            on_note=note, on_start=lambda n: tasks.append(bar.add_task("images",
                                                                                                     total=n)))

    try:
        metrics = asyncio.run(run())
    except (DamoClientError, ValueError) as exc:
        _fail(exc)
    click.echo(metrics.report())
    for path, text in ((json_path, json.dumps(metrics.to_dict(), indent=2)),
                       (results_path, json.dumps(metrics.results))):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n")
            click.echo(f"written: {path}")


def _progress_bar(what: str, quiet: bool = False) -> Any:
    """A rich progress bar on stderr (ImportError without rich: the video extra brings it)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    return Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=quiet)


@cli.command(context_settings=CONTEXT)
@_connection_options
def health(url: Optional[str], protocol: str, model: str, timeout: float) -> None:
    """Is the server live and the model ready? Exit code 0 only if both."""
    with _client(url, protocol, model, timeout, retries=0) as client:
        try:
            live, ready = client.is_live(), client.is_ready()
        except DamoClientError as exc:
            _fail(exc)
    click.echo(f"server {client.url} ({protocol}): live={live} model {model} ready={ready}")
    if live and not ready:
        with _client(url, protocol, model, timeout, retries=0) as client:
            try:
                client.connect()  # a name the server does not serve: the served ones listed
            except ContractError as exc:
                _fail(exc)
            except DamoClientError:
                pass
    if not (live and ready):
        raise click.ClickException(f"model {model} is not ready")
    with _client(url, protocol, model, timeout, retries=0) as client:
        try:
            client.connect()
        except DamoClientError as exc:
            _fail(exc)
        _describe_export(client)


@cli.command(context_settings=CONTEXT)
@_connection_options
@click.option("--admin-key", envvar="DAMO_ADMIN_KEY",
              help="The operator's key for the repository index, where the server restricts it (the images' "
                   "ADMIN_KEY) [env DAMO_ADMIN_KEY; without it: the --model alone].")
def models(url: Optional[str], protocol: str, model: str, timeout: float, admin_key: Optional[str]) -> None:
    """The models of the server's repository with their versions and states."""
    note = ""
    with _client(url, protocol, model, timeout, retries=0) as client:
        try:
            index = client.models(admin_key)
        except RestrictedAPI as exc:
            if admin_key:
                _fail(exc)
            index = _asked_model_only(client)  # the open APIs still say how the model is served
            note = ("(only the model asked for: the repository index is an admin API on this server; "
                    "--admin-key or DAMO_ADMIN_KEY lists every model)")
        except DamoClientError as exc:
            _fail(exc)
        if any(m["name"] == model and m["state"] == "READY" for m in index):
            try:
                client.connect()
                _describe_export(client)
            except DamoClientError:
                pass  # the table below still says what the server holds
    width = max([len("model")] + [len(m["name"]) for m in index])
    click.echo(f"{'model':<{width}}  version  state")
    for m in index:
        reason = f"  ({m['reason']})" if m["reason"] else ""
        click.echo(f"{m['name']:<{width}}  {m['version'] or '-':<7}  {m['state'] or '-'}{reason}")
    if note:
        click.echo(note)


def _asked_model_only(client: DamoClient) -> list[dict]:
    """The index row of the client's model from the open APIs (ready state, metadata's versions)."""
    try:
        ready = client.is_ready()
        versions = client.metadata().get("versions", []) if ready else []
    except DamoClientError as exc:
        _fail(exc)
    return [{"name": client.model, "version": ",".join(versions), "state": "READY" if ready else "UNAVAILABLE",
             "reason": "" if ready else "not ready, or not in the repository"}]


def _concurrency_range(ctx: click.Context, param: click.Parameter, value: str) -> str:
    parts = value.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise click.BadParameter(f"{value!r}: expected START[:END[:STEP]] of positive integers, e.g. 1:16:2")
    if len(parts) > 1 and int(parts[1]) < int(parts[0]):
        raise click.BadParameter(f"{value!r}: END ({parts[1]}) is below START ({parts[0]}); e.g. "
                                 f"{parts[1]}:{parts[0]}")
    return value


@cli.command(context_settings=CONTEXT)
@_connection_options
@click.option("--images", type=click.Path(exists=True, path_type=Path), multiple=True, required=True,
              help="Images (or folders) to send; repeat the option for more.")
@click.option("--concurrency", default="1:8:1", show_default=True, callback=_concurrency_range,
              help="Concurrent requests: START[:END[:STEP]].")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--measurement-interval", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Milliseconds per measurement window.")
@click.option("--max-trials", type=click.IntRange(min=1), default=5, show_default=True,
              help="Measurement windows per level before giving up on stability.")
@click.option("--stability", type=click.FloatRange(min=1), default=20.0, show_default=True,
              help="Accepted spread (%) of throughput and latency across the last 3 windows.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the table as CSV, a row per level as it is measured (ms; stable and error columns "
                   "mark levels perf_analyzer could not stabilise or measure).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Save a throughput/latency plot (PNG).")
def perf(url: Optional[str], protocol: str, model: str, timeout: float, images: tuple[Path, ...], concurrency: str,
         batch_size: int, measurement_interval: int, max_trials: int, stability: float, csv_path: Optional[Path],
         plot_path: Optional[Path]) -> None:
    """Latency percentiles and throughput per concurrency with perf_analyzer, using real images.

    \b
    One request with the first image goes first: if the server refuses it, nothing is measured.
    Each level is then measured by a perf_analyzer run of its own and printed (and appended to
    --csv) as soon as it is done. A level perf_analyzer could not stabilise is marked unstable; a
    level where it measured nothing is marked failed, with the reason, and the next levels are
    still measured. --timeout bounds the first request and how long a level may run past its
    measurement windows. Exit code 0 when every level was measured, 1 otherwise (the table, CSV
    and plot still hold every level that was).
    """
    from damo_client.perf import HEADER, RowWriter, format_row, plot_rows, summary_lines, sweep
    files = expand_paths(images)
    if not files:
        raise click.ClickException(f"no .jpg/.jpeg/.png images in {', '.join(map(str, images))}")
    address = url or default_url(protocol)
    rows = []
    try:
        datas = [to_bytes(f) for f in files]
        with _client(url, protocol, model, timeout) as client:
            try:  # one request first: an image or a setting the server refuses fails every request of the load
                client.detect(datas[0])
            except (InferenceError, ImageError) as exc:
                raise DamoClientError(f"every request would fail: {exc} — the answer to {files[0]}, sent alone "
                                      f"first") from None
            limit = client.max_batch_size or 1
            datatype = client.image_datatype
        if batch_size > limit:
            raise click.BadParameter(f"{batch_size} is above model {model}'s max batch size {limit}",
                                     param_hint="--batch-size")
        click.echo(f"{model} at {address} ({protocol}), batch {batch_size}, {len(datas)} image(s)")
        click.echo(HEADER)
        with RowWriter(csv_path) as writer:  # each level on screen and on disk as soon as it is measured
            for row in sweep(datas, address, protocol, model, concurrency, batch_size, measurement_interval,
                             max_trials, stability, timeout, datatype):
                click.echo(format_row(row))
                writer.write(row)
                rows.append(row)
        for line in summary_lines(rows):
            click.echo(line)
        if csv_path:
            click.echo(f"CSV written to {csv_path}")
        if plot_path:
            click.echo(f"plot written to {plot_rows(rows, plot_path)}")
    except DamoClientError as exc:
        _fail(exc)
    if any(not r.stable and not r.failed for r in rows):
        click.echo("warning: some levels are unstable (see above): their figures are one trial's", err=True)
    failed = [str(r.concurrency) for r in rows if r.failed]
    if failed:
        raise click.ClickException(f"perf_analyzer measured nothing at concurrency {', '.join(failed)} of "
                                   f"{concurrency} (reasons above)")


def main(argv: Optional[list[str]] = None) -> int:
    try:
        cli.main(args=argv, prog_name="damo-client", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
