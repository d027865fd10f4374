"""The project's errors: one base class that the CLI catches and turns into one line and an exit code.

Anything else that escapes a job (a ``KeyError`` in our code, say) is a bug and keeps its traceback.
"""

from __future__ import annotations

from cookie.constants import EXIT_BAD_CONFIG, EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_MISSING, EXIT_STACK


class CookieError(Exception):
    """Base class of every error a user can fix; ``exit_code`` is what the job exits with."""

    exit_code: int = EXIT_BAD_INPUT


class ConfigError(CookieError, ValueError):
    """A config file or setting that cannot be used; the message names the file and the key."""

    exit_code = EXIT_BAD_CONFIG


class InputError(CookieError, ValueError):
    """Bad input data; the message names the file, column or region."""

    exit_code = EXIT_BAD_INPUT


class MissingTable(CookieError, FileNotFoundError):
    """A warehouse table that does not exist yet; the message says which job builds it."""

    exit_code = EXIT_MISSING


class MissingModel(CookieError, LookupError):
    """A registered model, version or alias that does not exist."""

    exit_code = EXIT_MISSING


class StackNotLoaded(CookieError, RuntimeError):
    """Sedona or Delta classes are missing from the running JVM."""

    exit_code = EXIT_STACK


class ConcurrentRun(CookieError, RuntimeError):
    """Another job committed to the same Delta table while this one was writing (optimistic concurrency)."""

    exit_code = EXIT_CONFLICT
