"""Measurements of the pipeline's own work, apart from the library it measures: how faithfully
scores survive conversion to ABC (`fidelity`, `conversion`). Only benchmarks and tests use it."""
