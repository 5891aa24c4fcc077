"""One evaluation's result: a (model, benchmark) pair's metrics and artefacts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class EvalResult:
    model: str
    benchmark: str
    metrics: dict[str, float]
    artifacts: list[Path]
    rows: list[dict] | None = None  # per-query rows of the retrieval probes
    predictions: np.ndarray | None = None  # zero-shot classes with the user-style prompts (for the controls)
