"""Video through the served model, end to end, against perf_analyzer's ceiling; and how many live 25 frames/s
streams one CPU server sustains without drops.

    python perf/video.py [--models demo ns416] [--placements split shared] [--frames 250] [--rounds 3]

For the demo model (Ns at 256, the committed repository) and Ns at 416 (the shared official Ns layout with its
fixed random weights, 80 classes), one tritonserver serving both:

1. file     ``damo_client.video.detect_video`` on a synthetic clip (--frames, --size, 25 frames/s): PyAV decodes,
            each frame is sent as JPEG (quality 95) or as its decoded pixels (the CPU target's PIXELS input) with 8
            requests in flight, answers in frame order; frames per second from the first frame decoded to the last
            answer. Without outputs, and with the annotated video, JSON Lines and MOT text written (--save-dir).
2. ceiling  perf_analyzer at concurrency 8 on the same model, fed the same requests (the clip's first frames, as
            JPEG or as pixels), in turn with (1), --rounds times: the server's throughput for these requests with
            no client work. The ratio file / ceiling is the SDK's efficiency.
Two placements of the processes on the machine's cores (each with a server of its own):

- split   the server (and its Python backend stubs) pinned to half the cores, the client and perf_analyzer to the
          other half: the client on cores of its own, as a client on another host. The ceiling is the server's, and
          the ratio says whether the SDK keeps the server as busy as perf_analyzer does: the 0.9x target is judged here.
- shared  everything on every core: a client decoding video beside the server takes CPU the server would use
          (about 3 ms a frame against perf_analyzer's 1 ms), so the ratio falls with the server's cost per frame.

3. streams  N synthetic clips played live at 25 frames/s as H.264 MPEG-TS over UDP (damo_yolo.data.stream_sender),
            N = 1, 2, ..., received together by ``damo_client.stream.detect_streams`` (8 in flight) for
            --stream-seconds after --warmup-seconds; sustained when at most 1 % of the frames received are
            dropped. The senders (an x264 encoder each) and the client share the machine's cores with the server,
            as a camera gateway on the same host would (shared placement); on a server of its own the figure is
            higher.

Prints each with the CPU's ISA and writes video.md and video.json under --out.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
IN_FLIGHT = 8
STREAM_FPS = 25
MAX_DROP_FRACTION = 0.01
TARGET_FILE_OVER_CEILING = 0.9
PA_FRAMES = 25  # frames perf_analyzer cycles through (the raw ones are 0.7 MB each in its JSON)
FORMATS = ("jpeg", "raw")


def make_repository(models: list[str], tmp: Path) -> Path:
    """One repository: the committed demo model as ``demo`` and/or Ns at 416 as ``ns416``."""
    repo = tmp / "triton_models"
    repo.mkdir(parents=True)
    if "demo" in models:
        shutil.copytree(ROOT / "triton_models" / "damo_yolo", repo / "demo")
        config = repo / "demo" / "config.pbtxt"
        config.write_text(config.read_text().replace('name: "damo_yolo"', 'name: "demo"', 1))
    if "ns416" in models:
        from damo_yolo.tools.export import export_repository
        export_repository(SHARED / "fixtures" / "official" / "Ns_weights.pth", repo, name="ns416", variant="Ns")
    return repo


def placements(names: list[str]) -> dict[str, tuple[set, set]]:
    """{placement: (the server's cores, the client's)} from this process's cores; split needs two or more.
    (Halves by CPU number: on a host with SMT, hyperthread siblings may land on both sides.)"""
    cores = sorted(os.sched_getaffinity(0))
    half = len(cores) // 2
    found = {"split": (set(cores[half:]), set(cores[:half])), "shared": (set(cores), set(cores))}
    if half == 0:
        print("[video] one core: no split placement", flush=True)
        del found["split"]
    return {name: found[name] for name in names if name in found}


def pin(cores: set) -> None:
    """Every thread of this process on ``cores`` (Linux sets a thread's affinity, not a process's: the gRPC
    and decoder threads already running move too; new threads and child processes inherit it)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except OSError:  # a thread that has just ended
            pass


@contextlib.contextmanager
def placed_server(repo: Path, log: Path, model: str, server_cores: set, client_cores: set):
    """A LocalServer whose processes run on ``server_cores`` (inherited from this process while it starts),
    with this process (and what it starts: perf_analyzer, senders) on ``client_cores`` meanwhile."""
    from damo_yolo.serving.tritonserver import LocalServer
    before = os.sched_getaffinity(0)
    pin(server_cores)
    try:
        with LocalServer(repo, log, model=model) as server:
            pin(client_cores)
            yield server
    finally:
        pin(before)


def clip_frames(clip: Path, count: int = PA_FRAMES) -> dict[str, list]:
    """The clip's first ``count`` frames as the client sends them: JPEG bytes, and the decoded BGR arrays."""
    from damo_client.video import encode_jpeg, read_frames
    images = [frame.image for frame, _ in zip(read_frames(clip)[1], range(count))]
    return {"jpeg": [encode_jpeg(image) for image in images], "raw": images}


def file_fps(url: str, model: str, clip: Path, frame_format: str, save_dir: Path | None = None) -> float:
    from damo_client.video import detect_video
    summary = detect_video(clip, url=url, protocol="grpc", model=model, in_flight=IN_FLIGHT, save_dir=save_dir,
                           frame_format=frame_format)
    if save_dir is not None:
        shutil.rmtree(save_dir, ignore_errors=True)
    return summary.fps


def ceiling_fps(url: str, model: str, frames: list) -> float:
    from damo_client.perf import run_perf_analyzer
    (row,) = run_perf_analyzer(frames, url, "grpc", model, str(IN_FLIGHT), 1, 3000, max_trials=6,
                               stability_percentage=15)
    return row.throughput


def free_udp_ports(count: int) -> list[int]:
    import socket
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def live_streams(url: str, model: str, clip: Path, count: int, seconds: float, warmup: float) -> dict:
    """``count`` live streams at STREAM_FPS for ``warmup`` + ``seconds``: frames answered and dropped after the
    warm-up (the run's counts at its end minus those at the warm-up's end)."""
    from damo_client.stream import detect_streams
    ports = free_udp_ports(count)
    senders = [subprocess.Popen([sys.executable, "-m", "damo_yolo.data.stream_sender", str(clip),
                                 f"udp://127.0.0.1:{port}", "--loop", "--fps", str(STREAM_FPS)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in ports]
    at_warmup: dict[str, tuple[int, int]] = {}
    start = time.monotonic()

    def frame(summary, result) -> None:
        if time.monotonic() - start < warmup:
            at_warmup[summary.source] = (summary.frames, summary.dropped)

    try:
        summaries = detect_streams([f"udp://127.0.0.1:{p}" for p in ports], url=url, protocol="grpc", model=model,
                                   seconds=warmup + seconds, in_flight=IN_FLIGHT, on_frame=frame)
    finally:
        for sender in senders:
            sender.kill()
    answered = sum(s.frames - at_warmup.get(s.source, (0, 0))[0] for s in summaries)
    dropped = sum(s.dropped - at_warmup.get(s.source, (0, 0))[1] for s in summaries)
    latencies = [ms for s in summaries for ms in list(s.latencies_ms)[at_warmup.get(s.source, (0, 0))[0]:]]
    received = answered + dropped
    return {"streams": count, "answered": answered, "dropped": dropped,
            "drop_fraction": dropped / received if received else 1.0,
            "answered_fps": answered / seconds, "expected_fps": STREAM_FPS * count,
            "p50_ms": statistics.median(latencies) if latencies else float("nan"),
            "sustained": bool(received) and dropped / received <= MAX_DROP_FRACTION
            and answered >= 0.9 * STREAM_FPS * count * seconds}


def report(results: dict) -> str:
    cores = {name: f"server on cores {sorted(p['server_cores'])}, client on {sorted(p['client_cores'])}"
             for name, p in results["placements"].items()}
    lines = ["# Video through the served model: files against perf_analyzer's ceiling, live streams per server", "",
             f"{results['when']} · {results['machine']} · clip {results['frames']} frames of "
             f"{results['size'][1]}x{results['size'][0]} at 25 frames/s, {IN_FLIGHT} in flight; frames sent as JPEG "
             "(quality 95) or as decoded pixels (raw: the CPU target's PIXELS input); perf_analyzer fed the same "
             f"requests (the clip's first {PA_FRAMES} frames); {results['rounds']} rounds in turn, median. "
             "Placements: " + "; ".join(f"{name}: {text}" for name, text in cores.items()) + ".", "",
             "| placement | model | frames sent as | file (frames/s) | perf_analyzer ceiling | file / ceiling | "
             "file, outputs written |", "|---|---|---|---|---|---|---|"]
    for placement, p in results["placements"].items():
        for name, m in p["models"].items():
            for fmt in FORMATS:
                f = m[fmt]
                lines.append(f"| {placement} | {name} | {fmt} | {f['file_fps']:.1f} | {f['ceiling_fps']:.1f} | "
                             f"{f['file_fps'] / f['ceiling_fps']:.2f}x | {f['outputs_fps']:.1f} |")
    if results.get("streams"):
        lines += ["", "Live 25 frames/s streams sustained by one server on every core, the senders and the client "
                  "beside it (at most 1 % dropped, frames sent as `auto` chooses here: raw): " + "; ".join(
                      f"{name} {m['sustained']}" for name, m in results["streams"].items()),
                  "", "Live runs (after the warm-up: answered and dropped frames, latency p50):", ""]
        for name, m in results["streams"].items():
            lines += [f"- {name}: " + "; ".join(
                f"{r['streams']} stream(s) {r['answered_fps']:.1f}/{r['expected_fps']} frames/s, "
                f"{100 * r['drop_fraction']:.1f} % dropped, p50 {r['p50_ms']:.0f} ms"
                + (" (sustained)" if r["sustained"] else "") for r in m["runs"])]
    judged = "split" if "split" in results["placements"] else "shared"
    ratios = {name: m["raw"]["file_fps"] / m["raw"]["ceiling_fps"]
              for name, m in results["placements"][judged]["models"].items()}
    lines += ["", f"Target: a file ≥ {TARGET_FILE_OVER_CEILING:.1f}x the ceiling of the same requests, frames as "
              f"`auto` sends them on this host (raw), {judged} placement: " + "; ".join(
                  f"{name} {'met' if ratio >= TARGET_FILE_OVER_CEILING else 'NOT met'} ({ratio:.2f}x)"
                  for name, ratio in ratios.items())]
    return "\n".join(lines) + "\n"


def file_rounds(url: str, model: str, clip: Path, frames: dict, rounds: int, out: Path, tag: str) -> dict:
    """The file, the ceiling and the file with outputs, for each frame format, ``rounds`` times in turn."""
    file_fps(url, model, clip, "jpeg")  # warm-up
    seen = {fmt: {"file": [], "ceiling": [], "outputs": []} for fmt in FORMATS}
    for r in range(rounds):
        for fmt in (FORMATS if r % 2 == 0 else FORMATS[::-1]):
            seen[fmt]["file"].append(file_fps(url, model, clip, fmt))
            seen[fmt]["ceiling"].append(ceiling_fps(url, model, frames[fmt]))
            seen[fmt]["outputs"].append(file_fps(url, model, clip, fmt, out))
            print(f"[{tag}] round {r + 1}, {fmt}: file {seen[fmt]['file'][-1]:.1f} frames/s, ceiling "
                  f"{seen[fmt]['ceiling'][-1]:.1f}, with outputs {seen[fmt]['outputs'][-1]:.1f}", flush=True)
    return {fmt: {"file_fps": statistics.median(v["file"]), "ceiling_fps": statistics.median(v["ceiling"]),
                  "outputs_fps": statistics.median(v["outputs"]), "rounds": v} for fmt, v in seen.items()}


def stream_runs(url: str, model: str, clip: Path, args: argparse.Namespace) -> dict:
    """Live runs of 1, 2, ... streams until one is not sustained."""
    runs, sustained = [], 0
    for count in range(1, args.max_streams + 1):
        run = live_streams(url, model, clip, count, args.stream_seconds, args.warmup_seconds)
        runs.append(run)
        print(f"[{model}] {count} live stream(s): {run}", flush=True)
        if not run["sustained"]:
            break
        sustained = count
    return {"runs": runs, "sustained": sustained}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["demo", "ns416"], choices=["demo", "ns416"])
    parser.add_argument("--placements", nargs="+", default=["split", "shared"], choices=["split", "shared"])
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--size", type=int, nargs=2, default=(360, 640), metavar=("H", "W"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-streams", type=int, default=8, help="0: no live streams")
    parser.add_argument("--stream-seconds", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    args = parser.parse_args(argv)
    from results_io import new_results, save  # perf/'s own helper, beside this script

    from damo_yolo.data.synthetic import load_backgrounds
    from damo_yolo.data.synthetic_video import generate_clip
    results = new_results(frames=args.frames, size=list(args.size), rounds=args.rounds, placements={}, streams={})
    print(f"[video] {results['machine']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="damo-video-") as tmp:
        tmp_path = Path(tmp)
        clip = generate_clip(tmp_path, "clip", args.frames, tuple(args.size), STREAM_FPS, seed=1,
                             photos=load_backgrounds(SHARED / "data" / "images"), objects=8)
        frames = clip_frames(clip)
        repo = make_repository(args.models, tmp_path)
        for placement, (server_cores, client_cores) in placements(args.placements).items():
            done = results["placements"][placement] = {"server_cores": sorted(server_cores),
                                                       "client_cores": sorted(client_cores), "models": {}}
            with placed_server(repo, tmp_path / f"server-{placement}.log", args.models[0], server_cores,
                               client_cores) as server:
                for model in args.models:
                    done["models"][model] = file_rounds(server.grpc_url, model, clip, frames, args.rounds,
                                                        tmp_path / "out", f"{placement} {model}")
                    if placement == "shared" and args.max_streams:
                        results["streams"][model] = stream_runs(server.grpc_url, model, clip, args)
    text = report(results)
    save(args.out, "video", results, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
