"""Spellings of the previous release that still work for one more, each with a one-line warning on stderr.

The CLI speaks one language (`-o/--output FILE` for a file, `--output-dir DIR` for a folder, `--format`
for a report's format, units on every size); scripts written against the old spellings keep running
while they are moved over. Old option names are rewritten before click parses (`Command`, given a
`renamed` table); old option values (a size without its unit) are read the old way by the option's
callback, which calls `warn`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import click


def warn(ctx: click.Context | None, old: str, new: str) -> None:
    """One line on stderr: what was written, what to write instead, and that the old form is going."""
    names = []
    while ctx is not None and ctx.parent is not None:  # the subcommands, whatever the program was called
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    where = " ".join(["cellcheck", *reversed(names)])
    click.echo(f"{where}: {old} is deprecated and goes in the next release; write {new}", err=True)


def rename(args: Sequence[str], renamed: Mapping[str, str], ctx: click.Context | None = None) -> list[str]:
    """`args` with each old option name (`--out X`, `--out=X`) replaced by its new one, up to a lone `--`."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + list(args[i:])
        name, eq, value = arg.partition("=")
        if name in renamed:
            warn(ctx, name, renamed[name])
            arg = renamed[name] + eq + value
        out.append(arg)
    return out


class Command(click.Command):
    """A click command that also accepts the option names of the previous release (`renamed`: old -> new)."""

    def __init__(self, *args, renamed: Mapping[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.renamed = dict(renamed or {})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rename(args, self.renamed, ctx))
