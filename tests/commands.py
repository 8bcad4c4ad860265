"""Run cellcheck as a user does (a subprocess of this interpreter's package) and write the configs it reads."""

import subprocess
import sys
from pathlib import Path

import yaml


def cellcheck(*args: str, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cellcheck", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def write_config(root: Path, name: str, base: dict, **changes) -> Path:
    """`root/name.yaml`: `base` with `changes`, its run in `runs/name`."""
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**base, "output_dir": f"runs/{name}", **changes}))
    return path
