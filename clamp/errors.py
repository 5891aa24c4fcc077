"""The one user-error type.

A `UserError` is a problem with what the user gave (a path, a value, a file): entry points
print its message as one line and exit 2. Anything else is a bug and keeps its traceback.
It subclasses `ValueError` so library callers that already guard against bad values keep
working.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input; the message is one line for the terminal."""


class ConfigError(UserError):
    """A configuration value failed validation; the message names the field."""


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
