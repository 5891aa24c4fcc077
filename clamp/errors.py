"""The one user-error type.

A `UserError` is a problem with what the user gave (a path, a value, a file): entry points
print its message as one line and exit 2. Anything else is a bug and keeps its traceback.
It subclasses `ValueError` so library callers that already guard against bad values keep
working.
"""

from __future__ import annotations

import errno
import os


class UserError(ValueError):
    """A problem with the user's input; the message is one line for the terminal."""


class ConfigError(UserError):
    """A configuration value failed validation; the message names the field."""


# errno values of a write that found no room: disk full, quota exceeded, over `ulimit -f`
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class DiskFullError(UserError):
    """A write found no room (disk full, quota, file-size limit); nothing partial was left.

    Not a bug, and nothing the code can fix, so it is reported as one line like a user
    error: free space and rerun (finished steps are skipped)."""

    @staticmethod
    def wrap(exc: BaseException, path: object) -> DiskFullError | None:
        """The one-line error for `exc` raised while writing `path`; None if `exc` is not "no room"."""
        code = getattr(exc, "errno", None)
        if not isinstance(exc, OSError) or code not in _NO_ROOM:
            return None
        return DiskFullError(
            f"no room to write {path}: {os.strerror(code)} (errno {code}); the partial file was removed,"
            " free space and rerun (finished steps are skipped)"
        )


def error_line(exc: BaseException) -> str:
    """One line for the terminal: a pydantic error names the field instead of "1 validation error"."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "config"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"invalid {exc.title} setting {where}: {err['msg']}{more}"
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
