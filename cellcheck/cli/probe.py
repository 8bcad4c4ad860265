"""`cellcheck probe CONFIG`: the run's real loader, validation read and step, measured beside the models.

Exit 0 when the probe ran through; 1 when it had to stop at the host's memory, or a model came out
below what it measured (a model bug, reported loudly); 2 when the config or its data cannot be read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cellcheck.cli.options import default_format, emit, size


@click.command("probe", short_help="Measure the run's loader, validation and step beside the models.")
@click.argument("config", type=click.Path(path_type=Path, readable=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--batches", type=click.IntRange(min=2), default=50, show_default=True,
              help="Loader batches per loader phase at most.")
@click.option("--seconds", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds per loader phase at most (and for the timed steps).")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Training steps timed after a warm-up step.")
@click.option("--limit", callback=size, default=None,
              help="Stop the probe when its processes hold more than this (default: 80% of what the host has "
                   "available at the start), e.g. 64G.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default=None,
              help="Report format (default: text on a terminal, json otherwise).")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Also write the JSON report to FILE (atomically).")
@click.option("--no-save", is_flag=True, help="Do not keep the report as probe.json in the config's output_dir.")
def probe_command(config, overrides, batches, seconds, steps, limit, fmt, output, no_save) -> None:
    """Measure the run's own data path (and GPU step) before submission, beside what the models predict.

    The trainer's loader for one epoch, the largest crops in flight, the largest validation crop and a
    few training steps, each measured (peak PSS of the process tree, batches per second, seconds per
    step); then each measurement beside the RAM and VRAM models, and a forecast of the run's time.
    The report is kept as OUTPUT_DIR/probe.json (a previous one is kept beside it); the gate and
    `cellcheck submit --probe` use it. Exit status: 0 ran through, 1 stopped at the memory limit or a
    model below its measurement, 2 unusable config or data.
    """
    from cellcheck.config import parse_overrides
    from cellcheck.probe import ProbeOptions, loaded_or_fail, render, run_probe, save_probe

    values = parse_overrides(list(overrides))
    result = run_probe(config, values, ProbeOptions(batches, seconds, steps, limit_bytes=limit))
    text = json.dumps(result, indent=1, default=str) + "\n"
    if output is not None:
        emit(text, output)
    notes = []
    if not no_save:
        saved, kept = save_probe(result, loaded_or_fail(config, values).config.output_dir)
        notes.append(f"cellcheck probe: report in {saved}" + (f" (the previous one kept as {kept.name})" if kept else ""))
    click.echo(render(result) + "".join(n + "\n" for n in notes) if (fmt or default_format()) == "text" else text,
               nl=False)
    sys.exit(1 if failed(result) else 0)


def failed(result: dict) -> bool:
    rows = (result.get("model") or {}).get("ram", []) + (result.get("model") or {}).get("vram", [])
    return bool(result.get("stopped")) or any(r["verdict"] != "ok" for r in rows)
