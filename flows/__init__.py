"""Prefect flows that wire `clamp` library calls into tasks.

Set before Prefect is imported by any flow module: a local, offline pipeline has nowhere to send
telemetry, and the temporary server's telemetry writes can collide with flow-run writes in its
SQLite database ("database is locked" tracebacks in the main job's output).
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")
