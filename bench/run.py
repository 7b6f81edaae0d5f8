"""`make bench`: every benchmark beside its baselines, in one run on this machine.

- limit: in-process predict_proba (scikit-learn, 1 thread: the cores one server worker gets) for
  1, 64 and 100 rows; and the ONNX graph shipyard serves with, for reference;
- floor: bench/floor_app.py, a bare ASGI app on the same uvicorn answering a fixed body (the HTTP
  floor: every server's rate is also shown as a share of it);
- baseline: bench/baseline_onnx_app.py (FastAPI + uvicorn, 1 worker, async handlers, the same ONNX
  graph and the same pydantic schemas as the Bento: the ratios compare serving stacks, not models);
- baseline_sklearn: bench/baseline_app.py, the same FastAPI app on scikit-learn's pipeline, kept as a
  second row for what it is (a different model runtime);
- shipyard: the served Bento (1 worker); and the staging pod through port-forward when the local
  cluster runs it (reported apart: the forwarder is in the path);
- loads: single client (p50/p99), 32 concurrent clients, 100-row lists (wrk, closed loops); an
  open-loop sweep of offered load up to and past saturation; and, for shipyard's server, open-loop
  overload at 3 x its measured saturation between two spells of normal load (the stress suite's
  generator, shipyard/harness/open_loop.py);
- under contention (bench/contention.py): the baseline and shipyard's server beside a busy neighbour on
  their core, and under CPU quotas as a pod's limits.cpu sets them;
- batch (bench/batch.py) and stream (bench/stream.py) against predict_proba on the same rows.

Writes docs/benchmarks.json, docs/benchmarks.md (table, date, cores) and
docs/benchmarks-latency.svg / docs/benchmarks-throughput.svg (latency and answers vs offered load).

usage: python -m bench.run [--quick]   (trains its own model into a scratch store)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SWEEP_RPS = (500, 1000, 2000, 4000, 6000, 8000, 10000, 12000)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_LOGS: dict[str, int] = {}  # server log file -> tracebacks in it, filled as each server stops


@contextlib.contextmanager
def server(cmd: list[str], env: dict[str, str], log: Path | None = None) -> Iterator[tuple[str, int]]:
    """A server process group on a free port of 127.0.0.1 (`--port` added to `cmd`); yields
    (url, pid) once /readyz answers. Its
    output goes to `log`, whose tracebacks are counted in SERVER_LOGS when it stops: a server
    that logs errors under load (a refusal crashing uvicorn's clean-up, once) is not a clean run."""
    from shipyard.targets import wait_until_ready

    port = free_port()
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=ROOT, env=dict(os.environ, **env), stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_ready(url, 120, alive=lambda: proc.poll() is None):
            raise RuntimeError(f"{' '.join(cmd[:4])} never became ready")
        yield url, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        if log:
            out.close()  # type: ignore[union-attr]
            SERVER_LOGS[str(log)] = log.read_text(errors="replace").count("Traceback (most recent call last)")


def worker_rss_mb(pid: int) -> list[float]:
    """RSS of each process in the server's tree (BentoML: arbiter + worker; uvicorn: one)."""
    import psutil

    root = psutil.Process(pid)
    return [round(p.memory_info().rss / 1e6, 1) for p in [root, *root.children(recursive=True)]]


def limit_rows_per_s(pipeline: Any, records: list[dict], rows: int, repeats: int) -> float:
    from threadpoolctl import threadpool_limits

    from service.model import features_frame

    batch = records[:rows]
    with threadpool_limits(1):
        for _ in range(20):
            pipeline.predict_proba(features_frame(batch))
        started = time.perf_counter()
        for _ in range(repeats):
            pipeline.predict_proba(features_frame(batch))
    return rows * repeats / (time.perf_counter() - started)


def onnx_rows_per_s(onnx_path: Path, records: list[dict], rows: int, repeats: int) -> float:
    from service.edge import EdgeModel
    from service.schemas import Transaction

    model = EdgeModel(onnx_path)
    batch = [Transaction.model_validate(r) for r in records[:rows]]
    for _ in range(20):
        model.score(batch)
    started = time.perf_counter()
    for _ in range(repeats):
        model.score(batch)
    return rows * repeats / (time.perf_counter() - started)


def encode(bodies: list[Any]) -> list[bytes]:
    return [json.dumps(b).encode() for b in bodies]


def measure_server(url: str, pid: int, bodies: list[bytes], lists: list[bytes] | None, quick: bool,
                   sweep: bool = True, overload: bool = False) -> dict[str, Any]:
    """Closed loops with wrk (the server pinned to one core, wrk to the other), then the open loops
    of shipyard/harness/open_loop.py on the other core (its CPU share and lateness are in each row)."""
    from bench import wrk
    from shipyard.harness import open_loop

    wrk.pin(pid)
    seconds = 3 if quick else 8
    out: dict[str, Any] = {
        "single_client": wrk.closed_loop(url, "/score", bodies, 1, seconds),
        "32_clients": wrk.closed_loop(url, "/score", bodies, 32, seconds),
    }
    if lists:
        out["100_row_lists_4_clients"] = wrk.closed_loop(url, "/score_batch", lists, 4, seconds, rows_per_request=100)
    if sweep:
        requests = [open_loop.Request("/score", body) for body in bodies]
        out["sweep"] = [open_loop.sweep_point(url, requests, rate, 2 if quick else 4) for rate in SWEEP_RPS]
    if overload:
        out["overload"] = open_loop.overload(url, [open_loop.Request("/score", body) for body in bodies],
                                             out["32_clients"]["answered_rps"], quick=quick)
    return out


def _pod_through_port_forward(bodies: list[bytes], quick: bool) -> dict[str, Any] | str:
    from bench import wrk

    kubectl = ROOT / ".shipyard" / "cluster" / "bin" / "kubectl"
    kubeconfig = ROOT / ".shipyard" / "cluster" / "admin.kubeconfig"
    if not kubectl.exists():
        return "skipped: the local cluster is not built"
    base = [str(kubectl), "--kubeconfig", str(kubeconfig), "-n", "fraud-staging"]
    if subprocess.run([*base, "get", "service", "fraud-scorer"], capture_output=True).returncode != 0:
        return "skipped: staging is not deployed on the local cluster"
    port = free_port()
    forward = subprocess.Popen([*base, "port-forward", "service/fraud-scorer", f"{port}:80", "--address", "127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from shipyard.targets import wait_until_ready

        url = f"http://127.0.0.1:{port}"
        if not wait_until_ready(url, 60):
            return "skipped: port-forward did not answer"
        seconds = 3 if quick else 8
        return {"single_client": wrk.closed_loop(url, "/score", bodies, 1, seconds),
                "32_clients": wrk.closed_loop(url, "/score", bodies, 32, seconds)}
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    s, b, lim = r["shipyard"], r["baseline"], r["limit"]
    ratio_32 = s["32_clients"]["answered_rps"] / b["32_clients"]["answered_rps"]
    lists_ratio = s["100_row_lists_4_clients"]["rows_per_s"] / b["100_row_lists_4_clients"]["rows_per_s"]
    lists_limit = s["100_row_lists_4_clients"]["rows_per_s"] / lim["onnx_100_rows_per_s"]
    p99_1 = s["single_client"]["p99_ms"]
    rss = max(r["shipyard_worker_rss_mb"][1:] or r["shipyard_worker_rss_mb"])
    return [
        {"target": "32 clients: answered rps vs the FastAPI+ONNX baseline", "need": ">= 1.0x",
         "measured": f"{ratio_32:.2f}x", "met": ratio_32 >= 1.0},
        {"target": "32 clients: p99 no worse than the baseline", "need": f"<= {b['32_clients']['p99_ms']} ms",
         "measured": f"{s['32_clients']['p99_ms']} ms", "met": s["32_clients"]["p99_ms"] <= b["32_clients"]["p99_ms"]},
        {"target": "single client: p99", "need": "<= 2 ms", "measured": f"{p99_1} ms", "met": p99_1 <= 2},
        {"target": "100-row lists: rows/s vs the baseline", "need": ">= 1.0x", "measured": f"{lists_ratio:.2f}x",
         "met": lists_ratio >= 1.0},
        {"target": "100-row lists: rows/s vs the ONNX graph in process (the limit)", "need": "reported",
         "measured": f"{lists_limit:.2f}x", "met": True},
        {"target": "32 clients: shipyard's server vs `bentoml serve` of the same Bento", "need": "reported",
         "measured": f"{s['32_clients']['answered_rps'] / r['shipyard_bentoml_serve']['32_clients']['answered_rps']:.2f}x",
         "met": True},
        {"target": "32 clients: share of the HTTP floor", "need": "reported",
         "measured": f"{s['32_clients']['answered_rps'] / r['floor']['32_clients']['answered_rps']:.2f}", "met": True},
        *overload_targets(s["overload"]),
        {"target": "worker memory (RSS)", "need": "< 250 MB each", "measured": f"{rss} MB", "met": rss < 250},
        {"target": "batch: rows/s vs raw predict_proba (1M rows)", "need": ">= 0.7x",
         "measured": f"{r['batch']['ratio']:.2f}x", "met": r["batch"]["ratio"] >= 0.7},
    ]


def overload_targets(o: dict[str, Any]) -> list[dict[str, Any]]:
    """The serving-path issue's overload goals, at 3 x the saturation measured in the same run."""
    over = o["overload"]
    failed = over["other_status"] + over["unanswered"] + o["after"]["other_status"] + o["after"]["unanswered"]
    at = f"open loop at {o['times']:g}x saturation ({over['offered_rps']:.0f}/s)"
    return [
        {"target": f"{at}: answered p99", "need": "< 100 ms (the deadline)", "measured": f"{over['answered_p99_ms']} ms",
         "met": over["answered_p99_ms"] is not None and over["answered_p99_ms"] < 100},
        {"target": f"{at}: refusals (503 + Retry-After) p99", "need": "< 20 ms", "measured": f"{over['refused_p99_ms']} ms",
         "met": over["refused_p99_ms"] is not None and over["refused_p99_ms"] < 20},
        {"target": f"{at}: 5xx but 503, or unanswered", "need": "0", "measured": str(failed), "met": failed == 0},
        {"target": f"{at}: back to normal after it", "need": "<= 10 s", "measured": f"{o['recovery_s']} s",
         "met": o["recovery_s"] is not None and o["recovery_s"] <= 10},
        {"target": f"{at}: the generator was not the bottleneck", "need": "CPU < 0.9, lateness p99 <= 5 ms",
         "measured": f"CPU {o['client_cpu']}, lateness p99 {o['send_lag_p99_ms']} ms", "met": not o["client_bound"]},
    ]


def markdown(r: dict[str, Any]) -> str:
    def row(name: str, m: dict[str, Any]) -> str:
        bound = " (client-bound)" if m.get("client_bound") else ""
        return (f"| {name} | {m['answered_rps']} | {m['rows_per_s']} | {m['p50_ms']} | {m['p99_ms']} | {m['rejected']} | "
                f"{m['errors']} | {m['client_cpu']}{bound} |")

    lines = [f"# Benchmarks ({r['date']}, {r['machine']['cores']} cores, {r['machine']['python']})", "",
             "Produced by `make bench` (`python -m bench.run`); every ratio is between figures of the same run.",
             "Servers get one worker each, pinned to core 0. Closed loops (single client, 32 clients, lists) use",
             "wrk (Debian's, C) pinned to core 1. Open loops (the sweep, the overload) use shipyard/harness/open_loop.py",
             "(uvloop + httptools, latency counted from when each request was due) on core 1. The generator's",
             f"CPU share is shown (1.0 is a whole core; >= {0.9} marks a result the generator may have limited).", "",
             "## Targets", "",
             "| target | need | measured | met |", "|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['need']} | {t['measured']} | {'yes' if t['met'] else 'NO'} |" for t in r["targets"]]
    lim = r["limit"]
    lines += ["", "## The limit: in-process scoring, 1 thread", "", "| scorer | rows per call | rows/s |", "|---|---|---|",
              f"| scikit-learn predict_proba | 1 | {lim['sklearn_1_rows_per_s']:.0f} |",
              f"| scikit-learn predict_proba | 64 | {lim['sklearn_64_rows_per_s']:.0f} |",
              f"| scikit-learn predict_proba | 100 | {lim['sklearn_100_rows_per_s']:.0f} |",
              f"| ONNX graph (what shipyard serves) | 1 | {lim['onnx_1_rows_per_s']:.0f} |",
              f"| ONNX graph (what shipyard serves) | 100 | {lim['onnx_100_rows_per_s']:.0f} |", "",
              "## Served", "", "| server, load | answered/s | rows/s | p50 ms | p99 ms | 503 | errors | client CPU |",
              "|---|---|---|---|---|---|---|---|"]
    names = {"floor": "HTTP floor (bare ASGI, fixed answer)", "baseline": "baseline: FastAPI + ONNX",
             "baseline_sklearn": "FastAPI + scikit-learn (another runtime)",
             "bentoml_vanilla": "plain BentoML service, same model (`bentoml serve`)",
             "shipyard_bentoml_serve": "shipyard's Bento under `bentoml serve`",
             "shipyard": "shipyard's Bento under shipyard's server (how pods serve)"}
    for name, label in names.items():
        for load in ("single_client", "32_clients", "100_row_lists_4_clients"):
            if load in r.get(name, {}):
                lines.append(row(f"{label}, {load.replace('_', ' ')}", r[name][load]))
    pod = r.get("pod_port_forward")
    if isinstance(pod, dict):
        for load, m in pod.items():
            lines.append(row(f"staging pod via port-forward, {load.replace('_', ' ')}", m))
    else:
        lines.append(f"| staging pod via port-forward | {pod} |||||||")
    if "floor" in r:
        floor = r["floor"]["32_clients"]["answered_rps"]
        lines += ["", "Share of the HTTP floor at 32 clients: " + ", ".join(
            f"{names[n]} {r[n]['32_clients']['answered_rps'] / floor:.2f}" for n in names if n != "floor" and n in r)]
    lines += ["", "## Offered load sweep (open loop, /score)", "",
              "| offered/s | baseline answered/s | baseline p99 ms | shipyard answered/s | shipyard p99 ms | shipyard 503 | "
              "shipyard 503 p99 ms | generator CPU (baseline, shipyard) |",
              "|---|---|---|---|---|---|---|---|"]
    for b, s in zip(r["baseline"]["sweep"], r["shipyard"]["sweep"]):
        lines.append(f"| {s['offered_rps']} | {b['answered_rps']} | {b['answered_p99_ms']} | {s['answered_rps']} | "
                     f"{s['answered_p99_ms']} | {s['refused']} | {s['refused_p99_ms']} | {b['client_cpu']}, {s['client_cpu']} |")
    o = r["shipyard"]["overload"]
    lines += ["", f"## Overload: open loop at {o['times']:g} x saturation (shipyard's server, /score)", "",
              f"Saturation: {o['saturation_rps']:.0f} answers/s (wrk, 32 clients, this run). Generator: "
              f"{o['generator']}, up to {o['connections']} connections, CPU {o['client_cpu']}, lateness p99 "
              f"{o['send_lag_p99_ms']} ms. Back to normal (2 s all answered, p95 <= {o['normal_p95_ms']:g} ms) "
              f"{o['recovery_s']} s after the overload.", "",
              "| phase | offered/s | answered/s | answered p50 ms | answered p99 ms | 503 | 503 p99 ms | other status | unanswered |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name in ("before", "overload", "after"):
        m = o[name]
        lines.append(f"| {name} | {m['offered_rps']:.0f} | {m['answered_rps']} | {m['answered_p50_ms']} | {m['answered_p99_ms']} | "
                     f"{m['refused']} | {m['refused_p99_ms']} | {m['other_status']} | {m['unanswered']} |")
    if "contention" in r:
        from bench.contention import markdown as contention_markdown

        lines += contention_markdown(r["contention"])
    lines += ["", "![latency vs offered load](benchmarks-latency.svg)", "",
              "![answers vs offered load](benchmarks-throughput.svg)", "", "## Batch and stream", "",
              f"- batch, {r['batch']['rows']} {r['batch']['format']} rows: {r['batch']['batch_rows_per_s']:.0f} rows/s "
              f"vs raw predict_proba {r['batch']['raw_predict_proba_rows_per_s']:.0f} rows/s: {r['batch']['ratio']:.2f}x",
              f"- stream, {r['stream']['messages']} messages, batches of {r['stream']['batch_size']}: "
              f"{r['stream']['worker_messages_per_s']:.0f} messages/s vs predict_proba on the same batches "
              f"{r['stream']['raw_predict_proba_rows_per_s_same_batches']:.0f} rows/s ({r['stream']['ratio']:.2f}x); "
              f"backlog drained in {r['stream']['drain_s']:.1f} s", ""]
    return "\n".join(lines)


def charts(r: dict[str, Any]) -> tuple[str, str]:
    from shipyard.harness.report import line_chart

    rows = [{"offered": s["offered_rps"], "baseline p99": b["answered_p99_ms"], "shipyard p99": s["answered_p99_ms"],
             "baseline p50": b["answered_p50_ms"], "shipyard p50": s["answered_p50_ms"],
             "baseline answered": b["answered_rps"], "shipyard answered": s["answered_rps"]}
            for b, s in zip(r["baseline"]["sweep"], r["shipyard"]["sweep"])]
    latency = line_chart("latency of answers (ms) vs offered load (req/s)", rows,
                         ["baseline p50", "baseline p99", "shipyard p50", "shipyard p99"], "ms", x="offered", x_unit="req/s")
    throughput = line_chart("answers per second vs offered load (req/s)", rows,
                            ["baseline answered", "shipyard answered"], "", x="offered", x_unit="req/s")
    strip = lambda fig: fig.split("<svg", 1)[1].rsplit("</svg>", 1)[0]  # noqa: E731
    return (f"<svg{strip(latency)}</svg>\n", f"<svg{strip(throughput)}</svg>\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short loads and small batch/stream runs (a smoke run)")
    parser.add_argument("--contention-only", action="store_true",
                        help="only the rows under contention, printed (docs/ left as they are): a look while tuning admission")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    os.environ["BENTOML_HOME"] = str(scratch / "bentoml")
    os.environ["SHIPYARD_STATE"] = str(scratch)
    import sklearn

    from bench import batch, contention, stream
    from service.edge import ONNX_FILE
    from service.model import generate_transactions, load_from_store, train_and_register
    from service.schemas import FEATURES

    sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
    print("training the benchmark's model (seeded) ...", file=sys.stderr)
    trained = train_and_register(scratch / "data", seed=7)
    model = load_from_store(trained.tag)
    import bentoml

    model_dir = Path(bentoml.models.get(trained.tag).path)
    frame = generate_transactions(2000, seed=99)
    records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
               for r in frame.drop(columns=["is_fraud"]).to_dict("records")]
    feature_records = [{k: r[k] for k in FEATURES} for r in records]
    bodies = encode(records[:500])
    lists = encode([records[i:i + 100] for i in range(0, 1000, 100)])
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "model": trained.tag,
    }
    print("limit: in-process scoring ...", file=sys.stderr)
    reps = 200 if args.quick else 1000
    result["limit"] = {
        "sklearn_1_rows_per_s": limit_rows_per_s(model.pipeline, feature_records, 1, reps),
        "sklearn_64_rows_per_s": limit_rows_per_s(model.pipeline, feature_records, 64, reps // 4),
        "sklearn_100_rows_per_s": limit_rows_per_s(model.pipeline, feature_records, 100, reps // 4),
        "onnx_1_rows_per_s": onnx_rows_per_s(model_dir / ONNX_FILE, records, 1, reps),
        "onnx_100_rows_per_s": onnx_rows_per_s(model_dir / ONNX_FILE, records, 100, reps // 4),
    }
    env = {"SHIPYARD_MODEL_DIR": str(model_dir), "SHIPYARD_THRESHOLD": str(model.threshold),
           "SHIPYARD_MODEL_VERSION": model.tag, "OMP_NUM_THREADS": "1"}
    uvicorn = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--workers", "1", "--log-level", "warning",
               "--no-access-log", "--loop", "uvloop", "--http", "httptools"]
    bento_env = {"SHIPYARD_MODEL": trained.tag, "SHIPYARD_WORKERS": "1", "OMP_NUM_THREADS": "1"}
    bentoml_serve = [sys.executable, "-m", "bentoml", "serve", "--host", "127.0.0.1"]
    # (name, command, environment, 100-row lists?, open-loop sweep?, overload?)
    servers = [
        ("floor", [*uvicorn, "bench.floor_app:app"], env, False, False, False),
        ("baseline", [*uvicorn, "bench.baseline_onnx_app:app"], env, True, True, False),
        ("baseline_sklearn", [*uvicorn, "bench.baseline_app:app"], env, True, False, False),
        ("bentoml_vanilla", [*bentoml_serve, "bench.vanilla:FraudScorer"], bento_env, True, False, False),
        ("shipyard_bentoml_serve", [*bentoml_serve, "bench.served:FraudScorer"], bento_env, True, False, False),
        ("shipyard", [sys.executable, "-m", "shipyard_serving.server", "bench.served:FraudScorer", "--host", "127.0.0.1"],
         bento_env, True, True, True),
    ]
    for name, command, server_env, with_lists, sweep, overload in servers:
        if args.contention_only:
            break
        print(f"{name} ...", file=sys.stderr)
        with server(command, server_env, scratch / f"{name}.log") as (url, pid):
            result[name] = measure_server(url, pid, bodies, lists if with_lists else None, args.quick, sweep, overload)
            result[f"{name}_worker_rss_mb"] = worker_rss_mb(pid)
    print("under contention: a busy neighbour, CPU quotas ...", file=sys.stderr)

    result["contention"] = contention.measure(
        lambda command, server_env: server(command, server_env, scratch / "contention.log"),
        {name: (command, server_env) for name, command, server_env, *_ in servers if name in ("baseline", "shipyard")},
        bodies, args.quick)
    if args.contention_only:
        print("\n".join(contention.markdown(result["contention"])))
        for t in contention.targets(result["contention"]):
            print(f"{'met' if t['met'] else 'NOT MET':8} {t['target']}: {t['measured']} (need {t['need']})")
        return
    print("the staging pod, if the cluster runs it ...", file=sys.stderr)
    result["pod_port_forward"] = _pod_through_port_forward(bodies, args.quick)
    print("batch and stream ...", file=sys.stderr)
    result["batch"] = batch.run(100_000 if args.quick else 1_000_000, "parquet")
    result["stream"] = stream.run(5_000 if args.quick else 50_000, 256)
    result["server_log_tracebacks"] = dict(SERVER_LOGS)
    tracebacks = sum(SERVER_LOGS.values())
    result["targets"] = targets(result) + contention.targets(result["contention"]) + [
        {"target": "server logs (every server of the run): tracebacks", "need": "0", "measured": str(tracebacks),
         "met": tracebacks == 0}]
    DOCS.mkdir(exist_ok=True)
    (DOCS / "benchmarks.json").write_text(json.dumps(result, indent=2) + "\n")
    (DOCS / "benchmarks.md").write_text(markdown(result))
    latency, throughput = charts(result)
    (DOCS / "benchmarks-latency.svg").write_text(latency)
    (DOCS / "benchmarks-throughput.svg").write_text(throughput)
    for t in result["targets"]:
        print(f"{'met' if t['met'] else 'NOT MET':8} {t['target']}: {t['measured']} (need {t['need']})")
    print(f"wrote {DOCS / 'benchmarks.md'}, benchmarks.json and two charts")


if __name__ == "__main__":
    main()
