"""Errors that datawinnow raises on purpose, each with a message a user can act on."""

from __future__ import annotations


class DatawinnowError(Exception):
    """Base class: the CLI prints these as one line instead of a traceback."""


class DataError(DatawinnowError, ValueError):
    """Bad input data. Names the file, the line (1-based; a row number for tabular files) and the field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field, self.reason = path, line, field, message
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class BudgetError(DatawinnowError, ValueError):
    """A budget outside (0, n], or one that cannot be read."""


class ConfigError(DatawinnowError, ValueError):
    """A bad option: unknown method, malformed --param, missing optional dependency."""


class MissingDependencyError(ConfigError, ImportError):
    """An optional dependency is not installed; the message says which extra provides it."""

    def __init__(self, package: str, extra: str, what: str):
        super().__init__(f"{what} needs the '{package}' package: pip install 'datawinnow[{extra}]' (or pip install {package})")


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (``\\n``, ``\\x1b``), so it prints as one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def user_message(error: BaseException) -> str | None:
    """The one-line message the CLI prints for an error a user caused, or None for a bug (shown with a traceback).

    datawinnow's own errors carry their message; operating-system errors (a path that cannot be
    written, a full disk, a refused connection) are described by what failed and where.
    """
    if isinstance(error, DatawinnowError):
        return one_line(str(error))
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start})"
    if isinstance(error, OSError):
        what = error.strerror or str(error) or type(error).__name__
        paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
        return one_line(f"{', '.join(paths)}: {what}" if paths else what)
    return None
