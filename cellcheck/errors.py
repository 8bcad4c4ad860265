"""The one exception type meant for users, and the CLI's one error edge: one line on stderr, exit 2.

Every command, in the `cellcheck` group or run on its own (`python -m trainer`, `python -m
trainer.infer`, a click test runner), ends an error through `exit_status`, so a user mistake
reads the same everywhere and nothing swallows an error into a silent exit 0 (docs/INCIDENTS.md, incident 11).
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from typing import Any, Callable


class CellcheckError(Exception):
    """A problem with the user's input that stops the audit itself (not a finding about one case).

    The message names the file and the fix, in one line.
    """

    exit_code = 2


def exit_status(exc: BaseException) -> int:
    """Print one line on stderr for an error that ends a command; return its exit status (2).

    A CellcheckError prints its message; a click usage error (missing option, bad value) its
    message and a pointer to --help; anything else is a bug of ours or of a dependency: one line,
    with the traceback only when CELLCHECK_DEBUG is set.
    """
    import click

    if isinstance(exc, CellcheckError):
        click.echo(f"cellcheck: {exc}", err=True)
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        hint = " (see --help)" if isinstance(exc, click.UsageError) else ""
        click.echo(f"cellcheck: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    if os.environ.get("CELLCHECK_DEBUG"):
        traceback.print_exception(exc)
    first = str(exc).splitlines()[0] if str(exc) else ""
    click.echo(f"cellcheck: internal error: {type(exc).__name__}: {first} (rerun with CELLCHECK_DEBUG=1 and report it)",
               err=True)
    return 2


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a click command callback so that it ends errors through `exit_status` when run on its own too."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import click

        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt, BrokenPipeError, SystemExit):
            raise
        except Exception as exc:
            sys.exit(exit_status(exc))

    return wrapper
