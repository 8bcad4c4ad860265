"""The one exception type meant for users, and the one exit policy every entry point applies.

A command ends one way whoever runs it (`cellcheck ...`, `python -m trainer` in the sbatch job,
`python -m trainer.gpu_check`, a click test runner): a user mistake is one line on stderr and exit 2,
Ctrl-C exit 130, a closed pipe exit 1 without a traceback, a bug one line (the traceback with
CELLCHECK_DEBUG=1) and exit 2. Nothing swallows an error into a silent exit 0 (docs/INCIDENTS.md, incident 11).
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, NoReturn

#: Exit status of a command stopped by Ctrl-C (SIGINT), as shells report it (128 + 2).
EXIT_INTERRUPTED = 130


class CellcheckError(Exception):
    """A problem with the user's input that stops the audit itself (not a finding about one case).

    The message names the file and the fix, in one line.
    """

    exit_code = 2


def exit_status(exc: BaseException) -> int:
    """Print at most one line on stderr for what ended a command; return its exit status.

    Ctrl-C (KeyboardInterrupt, click's Abort) is 130; a CellcheckError prints its message (2); a click
    usage error its message and a pointer to --help; a closed stdout (`cellcheck checks | head`) exits 1
    quietly; anything else is a bug of ours or of a dependency: one line, with the traceback only when
    CELLCHECK_DEBUG is set, exit 2.
    """
    import click

    if isinstance(exc, (KeyboardInterrupt, click.exceptions.Abort)):
        click.echo("cellcheck: interrupted", err=True)
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):  # the reader left; Python's documented way out
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
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


def run_cli(command: Any, args: list[str] | None = None, prog_name: str | None = None) -> NoReturn:
    """Run a click command (or a plain `main(args) -> int`) as a program, ending through `exit_status`."""
    try:
        if callable(getattr(command, "main", None)):
            status = command.main(args=args, prog_name=prog_name, standalone_mode=False)
        else:
            status = command(args)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - this is the one place every ending goes through
        sys.exit(exit_status(exc))
    sys.exit(status if isinstance(status, int) else 0)
