"""The project's own error types: what the command line reports as the user's mistake.

Every error a user can cause (a bad option, a bad path, a bad input file, a missing model)
is raised as a :class:`DermcleanError` subclass whose message names the file, row or option
and what was expected. The CLI prints that message on one line and exits with the class's
``exit_code``; anything else is a bug and keeps its traceback (exit status 1).

Exit statuses:

- ``0``: done.
- ``1``: internal error (a bug; the traceback is printed).
- ``2``: usage error: an option, a path, an output folder or a model that cannot be used.
- ``3``: invalid input data: an image, mask, labels row or manifest that cannot be used.
- ``4``: done, but some inputs were skipped (``--on-error skip``; listed in ``errors.csv``).

Each concrete class also derives from the built-in type that describes it (``ValueError``,
``FileNotFoundError``, ...), so library callers may catch either.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_SKIPPED = 4


class DermcleanError(Exception):
    """Base of every error caused by the user's options or data (not by a bug)."""

    exit_code = EXIT_INPUT


class UsageError(DermcleanError):
    """An option, path, output folder or model that cannot be used (exit status 2)."""

    exit_code = EXIT_USAGE


class InputError(DermcleanError):
    """Input data that cannot be used: an image, mask, labels row or manifest (exit status 3)."""

    exit_code = EXIT_INPUT


class OptionError(UsageError, ValueError):
    """An option value out of range or unknown (``--device foo``, ``--dilation -1``)."""


class ConfigError(UsageError, ValueError):
    """A params file or params section that cannot be used."""


class PathNotFound(UsageError, FileNotFoundError):
    """A path given by the user that does not exist."""


class OutputError(UsageError, FileExistsError):
    """An output path that would overwrite or land inside something this tool did not create."""


class DataError(InputError, ValueError):
    """Input content that cannot be used (names the file or row and what was expected)."""


class NotAFolder(UsageError, NotADirectoryError):
    """A path that should be a folder but is a file."""


USER_ERRORS: tuple[type[BaseException], ...] = (DermcleanError,)
"""What scripts catch as the user's mistake: the project's own error types only."""
