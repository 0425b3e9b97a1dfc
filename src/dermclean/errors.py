"""The exception types the CLI reports as user errors (one line, exit status 2)."""

from __future__ import annotations


def _collect() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
                                         PermissionError]
    try:
        from dermclean.tracking import ModelNotFound

        errors.append(ModelNotFound)
    except ImportError:  # tracking not importable: the base types still cover most errors
        pass
    return tuple(errors)


USER_ERRORS: tuple[type[BaseException], ...] = _collect()
