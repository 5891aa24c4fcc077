"""Flow-run overhead of the local stack on SQLite against PostgreSQL (`infra.stack up --postgres`).

    python benchmarks/bench_flow_overhead.py [--runs 30] [--deployment-runs 5] [--mlflow-runs 20] \\
        [--backends sqlite postgres] [--json out.json]

For each backend it starts a stack of its own (Prefect server, worker and MLflow server, no Dask)
in a temporary folder on free ports, measures in a child process pointed at it, and stops it:

- API flow-run lifecycle: create a flow run, set it Running, then Completed, through the
  server's API (three writes to its database, no engine);
- flow run: a trivial flow with one task, called in the child (client-side engine: every state
  change and log line goes through the server's API to its database); the first two are warm-up;
- deployment run: `run_deployment` of the same trivial flow, deployed from this checkout to the
  stack's process work pool, from creation to completion (includes the worker's poll interval,
  `worker_query_seconds`, and starting a Python process); with the run's own start and end times;
- MLflow run: start a run, log 5 params and 10 metrics, end it.

It prints the median and the interquartile range, in seconds, for each backend.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prefect import flow, task

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = "benchmarks/bench_flow_overhead.py:noop"


@task
def _add(a: int, b: int) -> int:
    return a + b


@flow(name="bench-noop")
def noop(x: int = 1) -> int:
    return _add(x, 1)


def _summary(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {
        "n": len(values),
        "median_s": round(statistics.median(values), 4),
        "q1_s": round(q[0], 4),
        "q3_s": round(q[2], 4),
    }


def measure(runs: int, deployment_runs: int, mlflow_runs: int) -> dict:
    """In a process whose environment points at a stack (PREFECT_API_URL, MLFLOW_TRACKING_URI)."""
    import mlflow
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Completed, Pending, Running

    out: dict = {}
    times = []
    with get_client(sync_client=True) as client:
        for i in range(runs + 2):
            start = time.perf_counter()
            created = client.create_flow_run(noop, state=Pending())
            for state in (Running(), Completed()):
                client.set_flow_run_state(created.id, state)
            if i >= 2:
                times.append(time.perf_counter() - start)
    out["api_flow_run_lifecycle"] = _summary(times)
    times = []
    for i in range(runs + 2):
        start = time.perf_counter()
        assert noop(i) == i + 1
        if i >= 2:  # the first runs register the flow and warm the client up
            times.append(time.perf_counter() - start)
    out["flow_run"] = _summary(times)

    if deployment_runs:
        deployment = noop.from_source(source=str(REPO), entrypoint=ENTRYPOINT).deploy(
            name="bench", work_pool_name="clamp-process", print_next_steps=False
        )
        walls, pickup, inside = [], [], []
        for _ in range(deployment_runs):
            start = time.perf_counter()
            run = run_deployment(deployment, timeout=300, poll_interval=0.2)
            walls.append(time.perf_counter() - start)
            assert run.state is not None and run.state.is_completed(), run.state
            pickup.append((run.start_time - run.expected_start_time).total_seconds())
            inside.append((run.end_time - run.start_time).total_seconds())
        out["deployment_run"] = _summary(walls)
        out["deployment_run_scheduled_to_started"] = _summary(pickup)
        out["deployment_run_started_to_ended"] = _summary(inside)

    if mlflow_runs:
        mlflow.set_experiment("bench-overhead")
        times = []
        for i in range(mlflow_runs + 1):
            start = time.perf_counter()
            with mlflow.start_run():
                mlflow.log_params({f"p{k}": k for k in range(5)})
                for k in range(10):
                    mlflow.log_metric(f"m{k}", float(k), step=i)
            if i:
                times.append(time.perf_counter() - start)
        out["mlflow_run"] = _summary(times)
    return out


def bench_backend(backend: str, args: argparse.Namespace, root: Path) -> dict:
    sys.path.insert(0, str(REPO))
    from infra.stack import Ports, Stack, _free_port

    stack = Stack(root / backend, Ports(*(_free_port("127.0.0.1") for _ in range(3))))
    start = time.perf_counter()
    stack.up(postgres=backend == "postgres")
    up_s = time.perf_counter() - start
    try:
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--measure",
                "--runs",
                str(args.runs),
                "--deployment-runs",
                str(args.deployment_runs),
                "--mlflow-runs",
                str(args.mlflow_runs),
            ],
            env={**stack.env(), "PREFECT_LOGGING_LEVEL": "WARNING"},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if child.returncode != 0:
            raise SystemExit(f"{backend}: the measurement failed:\n{child.stdout[-3000:]}{child.stderr[-3000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        stack.down()
    return {"stack_up_s": round(up_s, 1), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="trivial flow runs, called in-process")
    parser.add_argument("--deployment-runs", type=int, default=5, help="runs of a trivial deployment")
    parser.add_argument("--mlflow-runs", type=int, default=20, help="small MLflow runs")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.runs, args.deployment_runs, args.mlflow_runs)))
        return

    results = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        for backend in args.backends:
            results[backend] = bench_backend(backend, args, Path(tmp))
            print(f"{backend}: {json.dumps(results[backend])}", flush=True)
    print(f"\n{'metric (median s [q1-q3])':38s}" + "".join(f"{b:>24s}" for b in args.backends))
    for key in [k for k in results[args.backends[0]] if k != "stack_up_s"]:
        cells = [results[b][key] for b in args.backends]
        print(f"{key:38s}" + "".join(f"{c['median_s']:.3f} [{c['q1_s']:.3f}-{c['q3_s']:.3f}]".rjust(24) for c in cells))
    print(f"{'stack up (s)':38s}" + "".join(f"{results[b]['stack_up_s']:>24.1f}" for b in args.backends))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
