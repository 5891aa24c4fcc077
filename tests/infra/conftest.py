"""One local stack (SQLite stores, Dask on) for the infra tests that only need it running: it
starts once per session (about 20 s on 2 cores) instead of once per test. Tests of the stack's
own lifecycle (up, down, restart) keep starting their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.stack import Ports, Stack
from tests.conftest import free_port


@pytest.fixture(scope="session")
def dask_stack(tmp_path_factory) -> Iterator[Stack]:
    """`infra.stack up --dask` on free ports, in a session temp folder; stopped at the end."""
    stack = Stack(tmp_path_factory.mktemp("dask-stack") / "stack", Ports(free_port(), free_port(), free_port()))
    stack.up(dask=True)
    try:
        yield stack
    finally:
        stack.down()
