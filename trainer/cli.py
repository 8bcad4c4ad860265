"""`cellcheck train` / `python -m trainer`: parse arguments, run the gated training, exit with its status.

torch is imported only when the command runs, so `cellcheck audit` never pays for it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("train")
@click.option("--config", "-c", "config", type=click.Path(path_type=Path, readable=False), required=True,
              help="Training config (YAML).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--resume", is_flag=True,
              help="Continue the run in OUTPUT_DIR from its last.pt, exactly where it stopped. Without it, an "
                   "OUTPUT_DIR that already holds a run is refused (exit 1) and left as it is.")
@click.option("--mem", help="Host memory of the job (default: SLURM_MEM_PER_NODE, else the config's).")
def train_command(config: Path, overrides: tuple[str, ...], resume: bool, mem: str | None) -> None:
    """Train SegResNet, SwinUNETR or DiNTS with the masked loss, after the gate passes.

    Exit status: 0 done (or stopped on SIGTERM/SIGUSR1 with a checkpoint), 1 refused (the gate, or a run
    already in OUTPUT_DIR without --resume), 2 a usage error, 3 stopped on repeated non-finite losses.
    """
    from cellcheck.config import parse_overrides
    from trainer.train import train

    sys.exit(train(config, parse_overrides(list(overrides)), resume=resume, mem=mem))
