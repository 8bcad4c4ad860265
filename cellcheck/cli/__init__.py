"""The `cellcheck` command: a thin click layer over the library; it parses, calls, prints.

Every command is defined in this package, one module per family, over library functions that return
data; each is added to the group below by name. Torch-backed commands (train, infer) import torch only
when they run. Every ending goes through `cellcheck.errors.exit_status`: findings exit 1, a user mistake
is one line and exit 2, Ctrl-C exit 130, never a silent exit 0 (docs/INCIDENTS.md, incident 11).
"""

from __future__ import annotations

import click

from cellcheck import __version__
from cellcheck.cli.audit import audit_command, checks_command, stats_command
from cellcheck.cli.convert import convert_command
from cellcheck.cli.gate import gate_command
from cellcheck.cli.memory import predict_command, profile_command
from cellcheck.cli.probe import probe_command
from cellcheck.cli.submit import submit_command
from cellcheck.cli.train import infer_command, train_command
from cellcheck.errors import exit_status, run_cli


class _Cli(click.Group):
    """Every error inside a command ends through `exit_status` (one line, its exit status), under any runner."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - user mistakes, usage errors, Ctrl-C and bugs alike
            ctx.exit(exit_status(exc))


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cellcheck")
def cli() -> None:
    """Catch what would kill a 3D segmentation job before it is submitted.

    Exit status, every command: 0 done and fine, 1 findings (or refused), 2 a usage error in one line,
    130 interrupted (Ctrl-C); each command's --help says what its own mean.
    """


for _command in (audit_command, stats_command, checks_command, convert_command, gate_command, predict_command,
                 profile_command, probe_command, submit_command, train_command, infer_command):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (`cellcheck`, `python -m cellcheck`)."""
    run_cli(cli, argv, prog_name="cellcheck")
