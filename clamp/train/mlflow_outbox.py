"""Training's MLflow records go through an outbox, so an MLflow outage never stops or loses a run.

The training loop only queues records: params, tags, metrics, the model's artifacts, its
registration. One background thread sends them in order with `MlflowClient`. If the server
cannot be reached, the thread keeps the records and tries again every few seconds. When the
server comes back, the thread sends everything it kept. At the end of the run, `close` waits for
the queue to empty, but gives up once `flush_seconds` pass with nothing sent. It then appends
whatever is still unsent to `<output_dir>/mlflow-pending.jsonl` and logs a one-line warning.
`replay_pending` (`clamp mlflow-replay`) sends that file later. If the run is missing from the
target store, for example a fresh server, the replay creates it again.

The queue holds at most `max_queue` records in memory. Past that, new records go to a spill file
on disk, and the thread reads them back once it has sent the queue, so the order is kept.
Timestamps are taken when a record is queued, so a late metric keeps its real time. Sending a
record twice does no harm: MLflow drops a metric it already has, params and tags are rewritten
with the same values, and a model version is registered only once per run and source.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("clamp.train")

PENDING_FILE = "mlflow-pending.jsonl"

# MLflow retries a failed request 7 times, with backoff factor 2 (about 4 to 6 minutes). It waits
# 120 s for each answer. Training keeps its records in the outbox instead, so a request may fail
# fast: with these values a refused connection costs about 3 s, and a hung server 90 s at most.
# Values the user already set are kept.
QUICK_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

_BATCH_METRICS = 1000  # MLflow's limit per log_batch call
_BATCH_PARAMS = 100  # ... and for params or tags
_RETRY_SECONDS = (0.5, 5.0)  # first and longest wait between tries while the server is down


@contextlib.contextmanager
def quick_mlflow_requests() -> Iterator[None]:
    """Set `QUICK_HTTP` (unless already set) for the block; the variables are read on each request."""
    added = {k: v for k, v in QUICK_HTTP.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def is_transient(exc: BaseException) -> bool:
    """True if `exc` looks like an outage (worth trying again). An answer saying the request was
    wrong, an HTTP 4xx other than 429, counts as permanent."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        code = exc.get_http_status_code()
        return code >= 500 or code == 429  # connection errors and timeouts are wrapped as 500
    return isinstance(exc, OSError)


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- sending records (shared by the live outbox and the replay) ----------------------------------
def _batch(records: Iterable[dict]) -> list[dict]:
    """The first records to send together: consecutive metrics records (up to MLflow's limit
    per call), otherwise the first record alone."""
    out: list[dict] = []
    n = 0
    for r in records:
        if out and (r["op"] != "metrics" or out[0]["op"] != "metrics" or n + len(r["metrics"]) > _BATCH_METRICS):
            break
        out.append(r)
        n += len(r.get("metrics", ()))
    return out


def send(client: Any, run_id: str, batch: list[dict]) -> None:
    """Send one batch (from `_batch`) to the run."""
    from mlflow.entities import Metric, Param, RunTag

    op = batch[0]["op"]
    if op == "metrics":
        metrics = [Metric(k, float(v), r["timestamp"], r["step"]) for r in batch for k, v in r["metrics"].items()]
        client.log_batch(run_id, metrics=metrics, synchronous=True)
    elif op in ("params", "tags"):
        items = sorted(batch[0][op].items())
        for i in range(0, len(items), _BATCH_PARAMS):
            chunk = items[i : i + _BATCH_PARAMS]
            if op == "params":
                client.log_batch(run_id, params=[Param(k, str(v)) for k, v in chunk], synchronous=True)
            else:
                client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in chunk], synchronous=True)
    elif op == "dataset":
        from clamp.tracking import dataset_input

        r = batch[0]
        client.log_inputs(run_id, datasets=[dataset_input(r["name"], r["digest"], r["source"], r["context"])])
    elif op == "artifacts":
        client.log_artifacts(run_id, batch[0]["local_dir"], batch[0]["artifact_path"])
    elif op == "register":
        register_once(client, run_id, batch[0]["name"], batch[0]["artifact_path"])
    elif op == "end":
        client.set_terminated(run_id, batch[0]["status"], batch[0]["end_time"])
    else:
        raise ValueError(f"unknown MLflow outbox record {op!r}")


def register_once(client: Any, run_id: str, name: str, artifact_path: str) -> str:
    """Register the run's `artifact_path` folder as a version of model `name`, unless a version
    of this run with this source already exists (a record sent twice registers once)."""
    from mlflow.exceptions import MlflowException

    source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
    for v in client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
        if v.source == source:
            return str(v.version)
    with contextlib.suppress(MlflowException):  # already registered: add a version
        client.create_registered_model(name)
    return str(client.create_model_version(name, source=source, run_id=run_id).version)


# --- the live outbox -----------------------------------------------------------------------------
@dataclass
class CloseReport:
    sent: int  # records sent during the run
    pending: int  # records appended to the pending file (0: everything reached the server)
    pending_file: Path | None
    outage_seconds: float  # total time the server could not be reached
    outages: int  # how many times it went away


@dataclass
class _State:
    down_since: float | None = None
    outage_seconds: float = 0.0
    outages: int = 0
    last_error: str = ""
    rejected: list[dict] = field(default_factory=list)  # answered "bad request": kept for the pending file


class MlflowOutbox:
    """Queues the records of one run (`run_id` in the store at `tracking_uri`); see the module docstring."""

    def __init__(
        self,
        run_id: str,
        tracking_uri: str,
        out_dir: Path,
        *,
        experiment: str = "",
        run_name: str = "",
        flush_seconds: float = 30.0,
        max_queue: int = 20_000,
    ) -> None:
        from mlflow import MlflowClient

        self.run_id = run_id
        self.header = {
            "op": "run",
            "run_id": run_id,
            "tracking_uri": tracking_uri,
            "experiment": experiment,
            "run_name": run_name,
            "start_time": _now_ms(),
        }
        self.pending_path = Path(out_dir) / PENDING_FILE
        self.flush_seconds = flush_seconds
        self.max_queue = max_queue
        self._spill = Path(out_dir) / (PENDING_FILE + ".spill")
        self._adopt_stale_spill()
        self._spilling = False  # records go to the spill file (until the thread has read it back)
        self._spill_offset = 0  # bytes of the spill file already moved back to the queue
        self._queue: deque[dict] = deque()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = False
        self._last_progress = time.monotonic()
        self._state = _State()
        self.sent = 0
        self._client = MlflowClient(tracking_uri)
        self._thread = threading.Thread(target=self._work, name="mlflow-outbox", daemon=True)
        self._thread.start()

    @classmethod
    @contextlib.contextmanager
    def for_run(cls, run: Any, out_dir: Path, flush_seconds: float = 30.0) -> Iterator[MlflowOutbox | None]:
        """The outbox of an active MLflow run (None: no run, no outbox), closed at the end of the block."""
        if run is None:
            yield None
            return
        import mlflow

        exp = ""  # the experiment's name, so that a replay into an empty store can create it
        with contextlib.suppress(Exception):
            exp = mlflow.get_experiment(run.info.experiment_id).name
        outbox = cls(
            run.info.run_id,
            mlflow.get_tracking_uri(),
            out_dir,
            experiment=exp,
            run_name=run.info.run_name or "",
            flush_seconds=flush_seconds,
        )
        try:
            yield outbox
        except BaseException as exc:
            # Ctrl-C: write what is unsent at once instead of waiting for the server
            interrupted = not isinstance(exc, Exception)
            outbox.close("KILLED" if interrupted else "FAILED", wait=not interrupted)
            raise
        outbox.close("FINISHED")

    # records -------------------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        self._put({"op": "params", "params": {k: str(v) for k, v in params.items()}})

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._put({"op": "tags", "tags": {k: str(v) for k, v in tags.items()}})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._put(
            {
                "op": "metrics",
                "step": int(step),
                "timestamp": _now_ms(),
                "metrics": {k: float(v) for k, v in metrics.items()},
            }
        )

    def log_dataset(self, name: str, digest: str, source: str | Path, context: str = "training") -> None:
        """The run's dataset as an MLflow dataset input (`clamp.tracking.dataset_input`)."""
        self._put(
            {"op": "dataset", "name": name, "digest": digest, "source": str(Path(source).resolve()), "context": context}
        )

    def log_artifacts(self, local_dir: str | Path, artifact_path: str) -> None:
        self._put({"op": "artifacts", "local_dir": str(Path(local_dir).resolve()), "artifact_path": artifact_path})

    def register_model(self, name: str, artifact_path: str) -> None:
        self._put({"op": "register", "name": name, "artifact_path": artifact_path})

    def _put(self, record: dict) -> None:
        with self._cond:
            if not self._spilling and len(self._queue) < self.max_queue:
                self._queue.append(record)
                self._cond.notify_all()
                return
            if not self._spilling:
                log.warning(
                    "MLflow outbox full (%d records): further records wait in %s", len(self._queue), self._spill
                )
                # the header first: the spill file of a process that dies is a valid pending segment
                head = (json.dumps(self.header) + "\n").encode()
                self._spill.parent.mkdir(parents=True, exist_ok=True)
                self._spill.write_bytes(head)
                self._spilling, self._spill_offset = True, len(head)
            with self._spill.open("a") as fh:  # local disk: never blocks like the network
                fh.write(json.dumps(record) + "\n")

    def _adopt_stale_spill(self) -> None:
        """A spill file left by a process that died holds records never sent: into the pending file."""
        if self._spill.is_file():
            with self.pending_path.open("a") as fh:
                fh.write(self._spill.read_text())
            self._spill.unlink()
            log.warning("records an earlier run left unsent were added to %s", self.pending_path)

    # the sending thread ------------------------------------------------------------------------
    def _refill(self) -> None:
        """(lock held) Move the next spilled records back into the empty queue; once the spill
        file is used up, delete it, so that new records go to the queue again."""
        if not self._spilling:
            return
        with self._spill.open("rb") as fh:
            fh.seek(self._spill_offset)
            for line in fh:
                self._queue.append(json.loads(line))
                self._spill_offset += len(line)
                if len(self._queue) >= self.max_queue // 2:
                    return
        self._spill.unlink()
        self._spilling = False

    def _work(self) -> None:
        wait = _RETRY_SECONDS[0]
        while True:
            with self._cond:
                if not self._queue:
                    self._refill()
                while not self._queue and not self._stop:
                    self._cond.wait()
                    self._refill()
                if self._stop:
                    return
                batch = _batch(self._queue)
            try:
                send(self._client, self.run_id, batch)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the record; none may end the thread
                if is_transient(exc):
                    self._went_down(exc)
                    self._wake.wait(wait)  # close() wakes it for a last try
                    self._wake.clear()
                    wait = min(wait * 2, _RETRY_SECONDS[1])
                    continue
                self._came_back()  # it answered, so it is up
                log.warning(
                    "MLflow refused a %s record (%s): it is kept for the pending file",
                    batch[0]["op"],
                    str(exc).splitlines()[0][:200],
                )
                with self._cond:
                    self._state.rejected.extend({**r, "error": str(exc)[:300]} for r in batch)
            else:
                self._came_back()
                self.sent += len(batch)
            wait = _RETRY_SECONDS[0]
            with self._cond:
                for _ in batch:
                    self._queue.popleft()
                self._last_progress = time.monotonic()
                self._cond.notify_all()

    def _went_down(self, exc: Exception) -> None:
        s = self._state
        if s.down_since is None:
            s.down_since, s.outages = time.monotonic(), s.outages + 1
            s.last_error = str(exc).splitlines()[0][:300]
            log.warning(
                "MLflow server %s unreachable: training goes on, its records are kept and sent when the server is back",
                self.header["tracking_uri"],
            )
            log.debug("MLflow request failed: %s", s.last_error)

    def _came_back(self) -> None:
        s = self._state
        if s.down_since is not None:
            down = time.monotonic() - s.down_since
            s.outage_seconds += down
            s.down_since = None
            log.warning(
                "MLflow server reachable again after %.0f s: sending the %d records kept meanwhile",
                down,
                len(self._queue),
            )

    # the end ------------------------------------------------------------------------------------
    def close(self, status: str = "FINISHED", wait: bool = True) -> CloseReport:
        """Send what is queued; give up once `flush_seconds` pass without progress (at once
        without `wait`), then append the rest, and the run's end, to the pending file."""
        self._wake.set()  # a thread waiting out the server tries again now
        start = time.monotonic()
        with self._cond:
            while wait and (self._queue or self._spilling):
                if time.monotonic() - max(self._last_progress, start) >= self.flush_seconds:
                    break
                self._cond.wait(0.2)
            self._stop = True
            self._cond.notify_all()
            left = [*self._state.rejected, *self._queue]
            if self._spilling:
                with self._spill.open("rb") as fh:
                    fh.seek(self._spill_offset)
                    left += [json.loads(line) for line in fh]
                self._spill.unlink()
                self._spilling = False
        s = self._state
        if s.down_since is not None:
            s.outage_seconds += time.monotonic() - s.down_since
        report = CloseReport(self.sent, 0, None, s.outage_seconds, s.outages)
        if not left:
            return report
        # the run's end goes last: the replay ends the run once its records are in
        records = [self.header, *left, {"op": "end", "status": status, "end_time": _now_ms()}]
        self.pending_path.parent.mkdir(parents=True, exist_ok=True)  # a run that failed before making it
        with self.pending_path.open("a") as fh:  # append: an earlier run's pending records stay
            fh.writelines(json.dumps(r) + "\n" for r in records)
        report.pending, report.pending_file = len(left), self.pending_path
        steps = len({r["step"] for r in left if r["op"] == "metrics"})
        log.warning(
            "MLflow server unreachable at the end of the run: %d records (metrics of %d steps%s) written to %s;"
            " send them with `clamp mlflow-replay %s`",
            len(left),
            steps,
            "".join(
                f", {op}"
                for op in ("params", "tags", "dataset", "artifacts", "register")
                if any(r["op"] == op for r in left)
            ),
            self.pending_path,
            self.pending_path,
        )
        return report


# --- replay ---------------------------------------------------------------------------------------
@dataclass
class ReplayReport:
    sent: int = 0
    left: int = 0  # records still in the pending file (server unreachable, or refused)
    runs: list[str] = field(default_factory=list)  # the run ids written to
    created: list[str] = field(default_factory=list)  # runs created because the store lacked them
    error: str = ""


def read_pending(path: Path) -> list[tuple[dict, list[dict]]]:
    """The pending file's segments: (run header, records), one per closed run."""
    segments: list[tuple[dict, list[dict]]] = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("op") == "run":
            segments.append((record, []))
        elif not segments:
            raise ValueError(f"{path}:{n}: records before any run header")
        else:
            segments[-1][1].append({k: v for k, v in record.items() if k != "error"})
    return segments


def _resolve_run(client: Any, header: dict, report: ReplayReport) -> str:
    """The header's run in the target store; created (same name, experiment and start) when missing."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(header["run_id"]).info.run_id
    except MlflowException as exc:
        if is_transient(exc):
            raise
    from clamp.tracking import EXPERIMENT_KIND, local_artifact_location

    name = header.get("experiment") or "clamp"
    exp = client.get_experiment_by_name(name)
    exp_id = (
        exp.experiment_id
        if exp is not None
        else client.create_experiment(
            name, artifact_location=local_artifact_location(client.tracking_uri), tags=EXPERIMENT_KIND
        )
    )
    run = client.create_run(
        exp_id,
        start_time=header.get("start_time"),
        run_name=header.get("run_name") or None,
        tags={"clamp.replayed_from_run": header["run_id"], "clamp.replayed_from_store": header.get("tracking_uri", "")},
    )
    report.created.append(run.info.run_id)
    return run.info.run_id


def replay_pending(path: str | Path, tracking_uri: str | None = None) -> ReplayReport:
    """Send a pending file's records (in order) to `tracking_uri` (default: the store each run was
    meant for). The file is rewritten with what could not be sent, or deleted when all was."""
    from mlflow import MlflowClient

    path = Path(path)
    if path.is_dir():
        path = path / PENDING_FILE
    report = ReplayReport()
    left: list[dict] = []
    with quick_mlflow_requests():
        for header, records in read_pending(path):
            if report.error:  # the server went away: keep the rest as it is
                left += [header, *records]
                continue
            client = MlflowClient(tracking_uri or header.get("tracking_uri"))
            try:
                run_id = _resolve_run(client, header, report)
            except Exception as exc:  # noqa: BLE001 - reported, the records stay
                report.error = str(exc).splitlines()[0][:300]
                left += [header, *records]
                continue
            report.runs.append(run_id)
            kept: list[dict] = []
            i = 0
            while i < len(records):
                batch = _batch(itertools.islice(records, i, None))
                try:
                    send(client, run_id, batch)
                    report.sent += len(batch)
                except Exception as exc:  # noqa: BLE001
                    if is_transient(exc):
                        report.error = str(exc).splitlines()[0][:300]
                        kept += records[i:]
                        break
                    report.error = report.error or str(exc).splitlines()[0][:300]
                    kept += [{**r, "error": str(exc)[:300]} for r in batch]
                i += len(batch)
            if kept:  # under the run actually written to, so a second replay does not create another
                left += [{**header, "run_id": run_id}, *kept]
    report.left = sum(1 for r in left if r["op"] != "run")
    from clamp.io import write_text_atomic

    if left:
        write_text_atomic("".join(json.dumps(r) + "\n" for r in left), path)
    else:
        path.unlink()
    return report
