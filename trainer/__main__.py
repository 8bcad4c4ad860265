"""`python -m trainer --config train.yaml`: the gated trainer (same as `cellcheck train`)."""

from cellcheck.cli import run_command
from trainer.cli import train_command

run_command(train_command)
