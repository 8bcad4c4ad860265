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
@click.option("--resume", is_flag=True, help="Continue from OUTPUT_DIR/last.pt exactly where it stopped.")
@click.option("--mem", help="Host memory of the job (default: SLURM_MEM_PER_NODE, else the config's).")
def train_command(config: Path, overrides: tuple[str, ...], resume: bool, mem: str | None) -> None:
    """Train SegResNet, SwinUNETR or DiNTS with the masked loss, after the gate passes."""
    from cellcheck.config import parse_overrides
    from trainer.train import train

    sys.exit(train(config, parse_overrides(list(overrides)), resume=resume, mem=mem))
