"""The autoscaler's metric and behaviour, chosen on the CPU target's measured load curve.

    python perf/hpa_simulation.py                      # measure the curve (about 2 min), then simulate
    python perf/hpa_simulation.py --curve perf/results/hpa_simulation.json   # simulate again on a saved curve

1. measure   the CPU target (the python-backend model damo_yolo, exported from the demo checkpoint with the
             serving defaults) served by the real tritonserver; perf_analyzer with the real photographs at each
             concurrency; the server's /metrics read every second meanwhile. Per level: throughput, in-flight
             requests per pod (Little's law: rate(nv_inference_request_duration_us) / 1e6, the mean number of
             requests inside the server), queue time per completed request (the former metric), and the spread of
             both between 5-s windows (the noise the simulation adds, scaled to the adapter's 1-min rate).
2. simulate  the Kubernetes HorizontalPodAutoscaler (controller of Kubernetes 1.30: Pods metric averaged over the
             pods reporting it, ceil(replicas * metric / target), 10 % tolerance, missing pods counted as 0 on a
             scale-up and as the target on a scale-down, the stabilisation windows and rate policies of
             `behavior`, a 15 s sync period) on that curve: each pod receives an equal share of a steady open-loop
             load and reads the curve at that rate, averaged over the adapter's last minute, with measurement noise
             and the load itself wandering by --load-noise (5 %, correlated over 5 min). New pods serve after
             --startup seconds. Replica changes per hour at steady loads from 1.5 to 8.5 pods' worth of the
             curve's top throughput, for the former metric and behaviour and for the chosen ones
             (deploy/k8s/base/hpa.yaml, read from the file).
Writes hpa_simulation.md and hpa_simulation.json under --out (perf/results); one run, one machine.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
LEVELS = (1, 2, 3, 4, 6, 8, 12)
SYNC_S = 15  # the HPA controller's --horizontal-pod-autoscaler-sync-period
TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
RATE_WINDOW_S = 60  # the adapter's rate(...[1m])
SCRAPE_S = 15  # the ServiceMonitor's interval: a pod's rate needs two scrapes before the adapter has a value
CHANGES_AN_HOUR_TARGET = 4


# -- measurement -------------------------------------------------------------------------------------------------

def _counters(port: int) -> dict[str, float]:
    """damo_yolo's request counters from the server's /metrics (sums over the failure reasons)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    wanted = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_request_duration_us",
              "nv_inference_queue_duration_us")
    out = dict.fromkeys(wanted, 0.0)
    for name, labels, value in re.findall(r"^(\w+)\{([^}]*)\} (\S+)$", text, re.M):
        if name in out and 'model="damo_yolo"' in labels:
            out[name] += float(value)
    return out


def _metrics(a: tuple[float, dict], b: tuple[float, dict]) -> dict[str, float]:
    """Throughput, in-flight and queue µs per completed request between two readings (time, counters)."""
    dt = b[0] - a[0]
    d = {k: b[1][k] - a[1][k] for k in a[1]}
    done = d["nv_inference_request_success"] + d["nv_inference_request_failure"]
    return {"throughput": done / dt, "inflight": d["nv_inference_request_duration_us"] / dt / 1e6,
            "queue_us": d["nv_inference_queue_duration_us"] / max(done, 1.0)}


def measure_curve(levels, interval_ms: int) -> dict:
    from damo_client.perf import sweep
    from damo_yolo.serving.resources import cpu_isa
    from damo_yolo.serving.tritonserver import LocalServer
    from damo_yolo.tools.export import export_repository
    images = [p.read_bytes() for p in sorted((SHARED / "data" / "images").glob("*.jpg"))]
    if not images:
        raise SystemExit(f"no photographs under {SHARED / 'data' / 'images'}")
    checkpoint = ROOT / "demo" / "model" / "damoyolo_tinynasL18_Ns_synthetic.pth"
    rows = []
    with tempfile.TemporaryDirectory(prefix="hpa-curve-") as tmp:
        repo = export_repository(checkpoint, Path(tmp) / "triton_models")
        with LocalServer(repo, Path(tmp) / "server.log") as server:
            for level in levels:
                readings, stop = [], threading.Event()

                def read():
                    while not stop.is_set():
                        readings.append((time.monotonic(), _counters(server.metrics_port)))
                        stop.wait(1.0)

                reader = threading.Thread(target=read)
                reader.start()
                (row,) = sweep(images, server.http_url, concurrency=str(level), measurement_interval_ms=interval_ms,
                               max_trials=4, stability_percentage=25)
                stop.set()
                reader.join()
                readings.append((time.monotonic(), _counters(server.metrics_port)))
                whole = _metrics(readings[0], readings[-1])
                windows = [_metrics(readings[i], readings[i + 5]) for i in range(0, len(readings) - 5, 5)]
                spread = {k: float(np.std([w[k] for w in windows]) / max(np.mean([w[k] for w in windows]), 1e-9))
                          for k in ("inflight", "queue_us")} if len(windows) >= 3 else {"inflight": 0, "queue_us": 0}
                rows.append({"concurrency": level, **whole, "p95_ms": row.p95_ms, "cv_5s": spread,
                             "seconds": readings[-1][0] - readings[0][0]})
                print(f"  concurrency {level:2d}: {whole['throughput']:6.1f} req/s, in flight "
                      f"{whole['inflight']:5.2f}, queue {whole['queue_us'] / 1000:7.2f} ms/request, "
                      f"p95 {row.p95_ms:6.1f} ms", flush=True)
    return {"machine": cpu_isa(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}


# -- the load curve as a pod sees it ----------------------------------------------------------------------------

class Curve:
    """A pod's metrics at an open-loop arrival rate, interpolated on the measured closed-loop levels: at the
    rate a level served, the pod holds that level's requests. Below the first level the pod is idle part of the
    time (in-flight proportional to the rate, the first level's queue time); above the curve's top throughput
    the pod is overloaded and every further request per second waits a whole service time more (Little's law),
    so the metric keeps rising with load, as a real queue does."""

    def __init__(self, rows: list[dict]):
        rows = sorted(rows, key=lambda r: r["concurrency"])
        # the throughput envelope: more concurrency never serves less (a dip between levels is noise)
        self.x = np.maximum.accumulate([r["throughput"] for r in rows])
        self.values = {k: np.array([r[k] for r in rows]) for k in ("inflight", "queue_us")}
        self.top = float(self.x[-1])
        self.noise = {k: float(np.median([r["cv_5s"][k] for r in rows])) * math.sqrt(5 / RATE_WINDOW_S)
                      for k in ("inflight", "queue_us")}

    def at(self, metric: str, rate: float) -> float:
        v = self.values[metric]
        if rate <= self.x[0]:
            return float(v[0] * rate / self.x[0]) if metric == "inflight" else float(v[0])
        if rate < self.top:
            i = int(np.searchsorted(self.x, rate))
            while self.x[i] == self.x[i - 1]:  # a flat stretch of the envelope: its first level serves the rate
                i -= 1
            f = (rate - self.x[i - 1]) / (self.x[i] - self.x[i - 1])
            return float(v[i - 1] + f * (v[i] - v[i - 1]))
        extra = (rate - self.top) / self.top  # requests per second beyond the top, as a share of it
        inflight = v[-1] * (1 + extra) if metric == "inflight" else 0
        return float(inflight if metric == "inflight" else v[-1] + extra * self.values["inflight"][-1] / self.top
                     * 1e6)


# -- the HorizontalPodAutoscaler ---------------------------------------------------------------------------------

@dataclass
class Policy:
    type: str  # Pods or Percent
    value: int
    period_s: int


@dataclass
class Rules:
    window_s: int
    policies: list[Policy]
    select: str = "Max"


@dataclass
class Config:
    label: str
    metric: str  # a Curve metric
    target: float
    up: Rules
    down: Rules
    min_replicas: int = 2
    max_replicas: int = 10


def config_from_hpa(label: str, hpa: dict, metric: str) -> Config:
    spec = hpa["spec"]
    (m,) = spec["metrics"]

    def rules(side: dict) -> Rules:
        return Rules(int(side.get("stabilizationWindowSeconds", 0)),
                     [Policy(p["type"], int(p["value"]), int(p["periodSeconds"])) for p in side["policies"]],
                     side.get("selectPolicy", "Max"))

    return Config(label, metric, float(m["pods"]["target"]["averageValue"]), rules(spec["behavior"]["scaleUp"]),
                  rules(spec["behavior"]["scaleDown"]), spec["minReplicas"], spec["maxReplicas"])


def _changed_in(events: list[tuple[float, int]], now: float, period_s: int) -> int:
    return sum(n for t, n in events if t > now - period_s)


@dataclass
class Hpa:
    """The controller's state for one HPA: its recommendations and its scale events (horizontal.go)."""
    config: Config
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    ups: list[tuple[float, int]] = field(default_factory=list)
    downs: list[tuple[float, int]] = field(default_factory=list)

    def replicas_for(self, values: list[float], missing: int, current: int) -> int:
        """calcPlainMetricReplicas: ``values`` of the pods reporting the metric, ``missing`` pods without it."""
        target = self.config.target
        if not values:
            return current  # no metric: the HPA leaves the scale alone (ScalingActive false)
        ratio = float(np.mean(values)) / target
        if missing == 0:
            return current if abs(1 - ratio) <= TOLERANCE else math.ceil(ratio * len(values))
        filled = values + [target if ratio < 1 else 0.0] * missing
        new_ratio = float(np.mean(filled)) / target
        if abs(1 - new_ratio) <= TOLERANCE or (ratio < 1) != (new_ratio < 1):
            return current
        proposed = math.ceil(new_ratio * len(filled))
        return current if (new_ratio < 1 and proposed > current) or (new_ratio > 1 and proposed < current) \
            else proposed

    def normalize(self, now: float, current: int, desired: int) -> int:
        """stabilizeRecommendationWithBehaviors, then convertDesiredReplicasWithBehaviorRate."""
        c = self.config
        up_rec = down_rec = desired
        for t, rec in self.recommendations:
            if t > now - c.up.window_s:
                up_rec = min(up_rec, rec)
            if t > now - c.down.window_s:
                down_rec = max(down_rec, rec)
        keep = max(c.up.window_s, c.down.window_s)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > now - keep] + [(now, desired)]
        stabilized = min(max(current, up_rec), down_rec)

        def start(policy: Policy) -> int:
            return (current - _changed_in(self.ups, now, policy.period_s)
                    + _changed_in(self.downs, now, policy.period_s))

        ups = [start(p) + p.value if p.type == "Pods" else math.ceil(start(p) * (1 + p.value / 100))
               for p in c.up.policies]
        up_limit = max(ups) if c.up.select == "Max" else min(ups)
        downs = [start(p) - p.value if p.type == "Pods" else int(start(p) * (1 - p.value / 100))
                 for p in c.down.policies]
        down_limit = min(downs) if c.down.select == "Max" else max(downs)
        highest = min(c.max_replicas, max(up_limit, current))
        lowest = max(c.min_replicas, min(down_limit, current))
        new = min(max(stabilized, lowest), highest)
        if new > current:
            self.ups.append((now, new - current))
        elif new < current:
            self.downs.append((now, current - new))
        horizon = max(p.period_s for p in c.up.policies + c.down.policies)
        self.ups = [e for e in self.ups if e[0] > now - horizon]
        self.downs = [e for e in self.downs if e[0] > now - horizon]
        return new


def simulate(config: Config, curve: Curve, load: float, hours: float, warmup_h: float, startup_s: float,
             load_noise: float, seed: int) -> dict:
    """A steady ``load`` (requests/s, wandering by ``load_noise``) for ``warmup_h + hours``; replica changes
    counted after the warm-up (which starts from the minimum)."""
    rng = np.random.default_rng(seed)
    hpa = Hpa(config)
    pods = [-1e9] * config.min_replicas  # each pod's start time
    history: list[list[tuple[float, float]]] = [[] for _ in pods]  # each pod's (time, metric) in the window
    wander, changes, replicas_seen = 0.0, 0, []
    corr = math.exp(-SYNC_S / 300.0)
    steps = int((warmup_h + hours) * 3600 / SYNC_S)
    for step in range(steps):
        now = step * SYNC_S
        wander = corr * wander + math.sqrt(1 - corr ** 2) * rng.normal(0, load_noise)
        serving = [i for i, s in enumerate(pods) if now >= s + startup_s]
        rate = load * (1 + wander) / max(len(serving), 1)
        for i in serving:
            value = curve.at(config.metric, rate) * math.exp(rng.normal(0, curve.noise[config.metric]))
            history[i] = [(t, v) for t, v in history[i] if t > now - RATE_WINDOW_S] + [(now, value)]
        reporting = [i for i in serving if now >= pods[i] + startup_s + SCRAPE_S]
        values = [float(np.mean([v for _, v in history[i]])) for i in reporting]
        current = len(pods)
        desired = hpa.replicas_for(values, current - len(reporting), current)
        new = hpa.normalize(now, current, desired)
        if new != current:
            if now >= warmup_h * 3600:
                changes += 1
            if new > current:
                pods += [now] * (new - current)
                history += [[] for _ in range(new - current)]
            else:  # the newest pods go first (the ReplicaSet's choice among equally ready pods)
                pods, history = pods[:new], history[:new]
        if now >= warmup_h * 3600:
            replicas_seen.append(len(pods))
    return {"changes_per_hour": changes / hours, "replicas_min": min(replicas_seen),
            "replicas_max": max(replicas_seen), "replicas_mean": float(np.mean(replicas_seen))}


def sweep_loads(config: Config, curve: Curve, args) -> list[dict]:
    rows = []
    for pods_worth in np.linspace(1.5, 8.5, 15):
        load = float(pods_worth * curve.top)
        runs = [simulate(config, curve, load, args.hours, 0.5, args.startup, args.load_noise, seed)
                for seed in range(args.seeds)]
        rows.append({"load_pods": round(float(pods_worth), 2), "load_rps": round(load, 1),
                     "changes_per_hour": float(np.mean([r["changes_per_hour"] for r in runs])),
                     "replicas_min": min(r["replicas_min"] for r in runs),
                     "replicas_max": max(r["replicas_max"] for r in runs),
                     "replicas_mean": float(np.mean([r["replicas_mean"] for r in runs]))})
    return rows


# the former configuration (before the in-flight metric): queue µs per request, 20 ms, windows 30 s / 5 min
FORMER = Config("former: queue time per request, target 20 ms, up 30 s window, down 5 min window",
                "queue_us", 20000, Rules(30, [Policy("Pods", 2, 60)]), Rules(300, [Policy("Pods", 1, 120)]))
# the same metric with the longer windows tried before the metric was changed
FORMER_LONG = Config("queue time per request, target 20 ms, up 60 s window, down 10 min window",
                     "queue_us", 20000, Rules(60, [Policy("Pods", 2, 60)]), Rules(600, [Policy("Pods", 1, 120)]))


def report(curve_data: dict, results: list[dict], args) -> str:
    lines = ["# Autoscaling: the metric and behaviour on the measured CPU-target curve", "",
             f"{curve_data['when']} · {curve_data['machine']} · one run, one machine (the client, perf_analyzer, "
             f"shares the cores with the server). The CPU target (damo_yolo, python backend, the demo checkpoint "
             f"with the serving defaults) served by the bundled tritonserver; perf_analyzer with the real "
             f"photographs.", "", "## Measured: one pod's metrics by concurrent requests", "",
             "| concurrency | req/s | in flight (Little) | queue ms / request | p95 ms "
             "| 5-s spread in flight / queue |",
             "|---|---|---|---|---|---|"]
    for r in curve_data["rows"]:
        lines.append(f"| {r['concurrency']} | {r['throughput']:.1f} | {r['inflight']:.2f} | "
                     f"{r['queue_us'] / 1000:.2f} | {r['p95_ms']:.1f} | {r['cv_5s']['inflight']:.0%} / "
                     f"{r['cv_5s']['queue_us']:.0%} |")
    lines += ["", f"Simulated: the Kubernetes 1.30 HPA algorithm, {SYNC_S} s sync, {TOLERANCE:.0%} tolerance, "
              f"{args.hours:g} h per load after 30 min of warm-up, {args.seeds} seeds, new pods serving after "
              f"{args.startup:g} s, load wandering by {args.load_noise:.0%} (5-min correlation), metric noise from "
              f"the 5-s spread scaled to the adapter's 1-min rate. Load in pods' worth of the curve's top "
              f"throughput.", ""]
    for res in results:
        c = res["config"]
        worst = max(r["changes_per_hour"] for r in res["rows"])
        mean = float(np.mean([r["changes_per_hour"] for r in res["rows"]]))
        lines += [f"## {c['label']}", "",
                  f"Replica changes per hour: mean {mean:.1f}, worst load {worst:.1f} "
                  f"(target ≤ {CHANGES_AN_HOUR_TARGET}: {'met' if worst <= CHANGES_AN_HOUR_TARGET else 'not met'}).",
                  "", "| load (pods' worth) | req/s | changes / hour | replicas min–max (mean) |", "|---|---|---|---|"]
        for r in res["rows"]:
            lines.append(f"| {r['load_pods']:g} | {r['load_rps']:.0f} | {r['changes_per_hour']:.1f} | "
                         f"{r['replicas_min']}–{r['replicas_max']} ({r['replicas_mean']:.1f}) |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    import yaml
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curve", type=Path, help="a saved hpa_simulation.json: simulate on its curve")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer's measurement window")
    parser.add_argument("--hours", type=float, default=4.0, help="steady load per simulated run")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--startup", type=float, default=30.0, help="seconds from a pod's creation to serving")
    parser.add_argument("--load-noise", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    args = parser.parse_args(argv)
    if args.curve:
        curve_data = json.loads(args.curve.read_text())["curve"]
    else:
        print("measuring the CPU target's load curve ...", flush=True)
        curve_data = measure_curve([int(x) for x in args.levels.split(",")], args.interval_ms)
    print(f"machine: {curve_data['machine']}")
    curve = Curve(curve_data["rows"])
    hpa = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "hpa.yaml").read_text())
    chosen = config_from_hpa("chosen (deploy/k8s/base/hpa.yaml): in-flight requests per pod", hpa, "inflight")
    chosen.label += (f", target {chosen.target:g}, up {chosen.up.window_s} s window, "
                     f"down {chosen.down.window_s} s window")
    noisier = argparse.Namespace(**{**vars(args), "load_noise": 2 * args.load_noise})
    results = []
    for config, run_args in ((FORMER, args), (FORMER_LONG, args), (chosen, args), (chosen, noisier)):
        if run_args is noisier:
            config = replace(config, label=f"{config.label}; load wandering by {noisier.load_noise:.0%}")
        rows = sweep_loads(config, curve, run_args)
        worst = max(r["changes_per_hour"] for r in rows)
        print(f"{config.label}: replica changes per hour at steady load: mean "
              f"{np.mean([r['changes_per_hour'] for r in rows]):.1f}, worst {worst:.1f}", flush=True)
        results.append({"config": asdict(config), "rows": rows})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hpa_simulation.json").write_text(json.dumps({"curve": curve_data, "results": results}, indent=2)
                                                  + "\n")
    (args.out / "hpa_simulation.md").write_text(report(curve_data, results, args) + "\n")
    print(f"report: {args.out / 'hpa_simulation.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
