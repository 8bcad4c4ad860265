"""`cellcheck submit`: gate a training config, then sbatch a job sized from the gate's plan."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cellcheck.cli.options import slurm_mem
from cellcheck.submit import CPUS_PER_GPU, submit


@click.command("submit", short_help="Gate a training config, then sbatch a job for it.")
@click.argument("config", type=click.Path(path_type=Path, readable=False))
@click.option("--dry-run", is_flag=True, help="Gate and print the job script (also written to OUTPUT_DIR/job.sbatch); do not submit.")
@click.option("--partition", "-p", help="SLURM partition (default: the cluster's default partition).")
@click.option("--time", "-t", "time_limit_", metavar="D-HH:MM:SS", help="Time limit (default: estimated from the epochs, at most 11 days).")
@click.option("--mem", callback=slurm_mem,
              help="Host memory of the job, with its unit: 256G (default: the config's mem, else the gate's plan).")
@click.option("--cpus", type=click.IntRange(min=1), help=f"CPUs for the job (default: {CPUS_PER_GPU} per GPU).")
@click.option("--gres", help="Generic resources (default: gpu:<gpu profile>:<gpus>, e.g. gpu:l40s:2; 'none': a CPU job).")
@click.option("--template", type=click.Path(path_type=Path, dir_okay=False), help="Job template (default: slurm/train.sbatch).")
@click.option("--python", "python", default="python3", show_default=True,
              help="Python on the compute node with cellcheck and torch installed, e.g. /path/.venv/bin/python.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable); the job gets it too.")
@click.option("--resume", is_flag=True, help="The job continues the run already in OUTPUT_DIR (from its last.pt).")
@click.option("--probe", is_flag=True, help="Run cellcheck probe first (kept as OUTPUT_DIR/probe.json): the gate "
              "judges host memory by it, and --mem and --time come from it unless given (the job script says so).")
def submit_command(config, dry_run, partition, time_limit_, mem, cpus, gres, template, python, overrides,
                   resume, probe) -> None:
    """Gate a training config, then sbatch a job sized from the gate's plan (slurm/train.sbatch).

    Exit status: 0 submitted (or written, with --dry-run), 1 refused (by the gate, or OUTPUT_DIR already
    holds a run and --resume was not given; nothing submitted), 2 a usage error or sbatch refused the job.
    """
    from cellcheck.config import parse_overrides

    sys.exit(submit(config, dry_run, template=template, overrides=parse_overrides(list(overrides)), partition=partition,
                    time=time_limit_, mem=mem, cpus=cpus, gres=gres, python=python, resume=resume, probe=probe,
                    say=lambda line: click.echo(line, err=True), show=lambda text: click.echo(text, nl=False)))
