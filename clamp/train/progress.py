"""What a person sees while a model trains: a progress bar on a terminal (step, loss,
samples/s, ETA, the latest validation metric), a line every logging window elsewhere."""

from __future__ import annotations

import sys
import time


def _fmt_seconds(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class TrainingProgress:
    """`mode`: "bar" (rich), "lines" (one line per logging window), "off", or "auto"
    (a bar when stderr is a terminal, else lines)."""

    def __init__(self, total: int, start: int, label: str, mode: str = "auto") -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode, self.total, self.start, self.label = mode, total, start, label
        self.fields: dict[str, str] = {}
        self.t0 = time.perf_counter()
        self._bar = None
        if mode == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self._progress.start()
            self._bar = self._progress.add_task(label, total=total, completed=start, info="")

    def step(self, done: int) -> None:
        if self._bar is not None:
            self._progress.update(self._bar, completed=done)

    def log(self, done: int, record: dict) -> None:
        """A logging window closed at step `done` with these metrics."""
        self.fields["loss"] = f"{record['loss']:.4f}"
        if "samples_per_s" in record:
            self.fields["samples/s"] = f"{record['samples_per_s']:.1f}"
        self._show(done)

    def validation(self, done: int, metrics: dict[str, float]) -> None:
        if "valid/text_to_music/mrr" in metrics:
            self.fields["valid MRR"] = f"{metrics['valid/text_to_music/mrr']:.3f}"
        self._show(done)

    def _show(self, done: int) -> None:
        info = "  ".join(f"{k} {v}" for k, v in self.fields.items())
        if self._bar is not None:
            self._progress.update(self._bar, completed=done, info=info)
        elif self.mode == "lines":
            elapsed = time.perf_counter() - self.t0
            rate = (done - self.start) / elapsed if elapsed > 0 else 0.0
            eta = (self.total - done) / rate if rate > 0 else 0.0
            print(
                f"{self.label}: step {done}/{self.total}  {info}  eta {_fmt_seconds(eta)}", file=sys.stderr, flush=True
            )

    def close(self) -> None:
        if self._bar is not None:
            self._progress.stop()
            self._bar = None
