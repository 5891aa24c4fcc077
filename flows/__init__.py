"""Prefect flows that wire `clamp` library calls into tasks.

The environment defaults (telemetry off, offline, quiet Dask; `clamp.environment`) are applied
here, before any flow module imports Prefect: a local, offline pipeline has nowhere to send
telemetry, and the temporary server's telemetry writes can collide with flow-run writes in its
SQLite database ("database is locked" tracebacks in the main job's output).
"""

from clamp.environment import apply_defaults

apply_defaults()
