"""`python -m trainer --config train.yaml`: the gated trainer (same as `cellcheck train`; the sbatch template runs this)."""

from cellcheck.cli.train import train_command
from cellcheck.errors import run_cli

run_cli(train_command, prog_name="python -m trainer")
