"""`cellcheck gate`: the audit, the training config, the environment and the memory plan, one verdict."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cellcheck.cli.options import FORMAT_HELP, FORMATS, audit_options, check_ids, default_format, emit, slurm_mem
from cellcheck.report import RENDERERS


@click.command("gate", short_help="Audit, config, environment and memory plan: one verdict.")
@click.argument("path", type=click.Path(path_type=Path, readable=False), required=False)
@click.option("--config", "-c", type=click.Path(path_type=Path, readable=False), help="Training config (YAML) to check and plan from.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--model", type=click.Choice(["segresnet", "swinunetr", "dints"]), help="Network (default: the config's).")
@click.option("--gpu", help="Target GPU profile, e.g. l40s, a100-80gb (default: the config's, else l40s).")
@click.option("--gpus", type=click.IntRange(min=1), help="GPUs (DDP ranks) per job.")
@click.option("--mem", callback=slurm_mem, help="Host memory of the job as SLURM's --mem, with its unit: 512G.")
@click.option("--workers", type=click.IntRange(min=0), help="DataLoader workers per rank.")
@click.option("--prefetch", type=click.IntRange(min=1), help="DataLoader prefetch factor.")
@click.option("--format", "fmt", type=FORMATS, default=None, help=FORMAT_HELP)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the report to FILE (atomically) instead of stdout.")
@click.option("--select", callback=check_ids, help="Only these check ids (comma-separated).")
@click.option("--ignore", callback=check_ids, help="Skip these check ids (comma-separated).")
@click.option("--no-strict", is_flag=True, help="Let warnings pass (the gate is strict by default).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--probe", is_flag=True, help="Run cellcheck probe on the config first (kept as OUTPUT_DIR/probe.json) "
              "and judge host memory by what it measured (a probe.json of this config is used without it too).")
def gate_command(path, config, overrides, model, gpu, gpus, mem, workers, prefetch, fmt, output, select, ignore,
                 no_strict, jobs, probe) -> None:
    """Audit + config + environment + memory plan: exit 0 only if a job may start.

    Exit status: 0 a job may start, 1 it may not (errors, or warnings unless --no-strict), 2 a usage error.
    """
    from cellcheck.config import parse_overrides
    from cellcheck.gate import run_gate

    values = parse_overrides(list(overrides))
    probed = None
    if probe:
        from cellcheck.probe import loaded_or_fail, run_probe, save_probe

        if config is None:
            raise click.UsageError("--probe runs the training config's data path: give --config")
        probed = run_probe(config, values)
        save_probe(probed, loaded_or_fail(config, values).config.output_dir)
    report = run_gate(
        path, config=config, overrides=values,
        plan={"model": model, "gpu": gpu, "gpus": gpus, "mem": mem, "workers": workers, "prefetch": prefetch},
        options=audit_options(None, jobs, None), select=select, ignore=ignore, strict=not no_strict, probe=probed,
    )
    emit(RENDERERS[fmt or default_format()](report), output)
    sys.exit(report.exit_code)
