"""Atomic file writes: a reader (or a rerun after a kill) sees the old file or the new one,
never a half-written one. Every writer goes through `atomic_path`."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; on success it replaces `path`.

    The temporary name is unique per process and call, so parallel writers of the same file
    (Dask workers sharing a cache) never write into each other's temporary file. On error the
    temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable: after a power cut the folder lists the new file, not the old one.
    Best effort: the file is already in place, and some file systems cannot fsync a folder."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(data: bytes, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(text: str, path: str | Path, fsync: bool = False) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(
    data: Any, path: str | Path, indent: int | None = 2, sort_keys: bool = True, fsync: bool = False
) -> None:
    text = json.dumps(data, indent=indent, sort_keys=sort_keys)
    write_text_atomic(text + "\n" if indent is not None else text, path, fsync=fsync)
