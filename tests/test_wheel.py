"""What `pip install cellcheck` gives a user with no source tree: the wheel built from this repository.

The wheel is built as a user's pip would (an isolated build), installed into a fresh virtual environment
(its dependencies taken from this one, which has them), and run from a folder far from the checkout:
`cellcheck submit --dry-run` writes its job from the packaged template, the `python -m` entry points
run, and the repository's own fixture generator is not installed (`fixtures` is another project's name).
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel; returns its bin folder."""
    root = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(root / "dist"), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((root / "dist").glob("cellcheck-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.startswith("cellcheck-")} == {"cellcheck", "trainer"}
    assert "cellcheck/slurm/train.sbatch" in names and "cellcheck/slurm/configs/dints-l40s.yaml" in names
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True, timeout=300)
    # the dependencies (torch, monai, zarr, ...) from this environment, listed after the venv's own packages
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv / "bin"


def run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([*args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    proc = run(installed, "python", "-c", "import cellcheck, trainer; print(cellcheck.__file__, trainer.__file__)",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert str(REPO) not in proc.stdout and str(installed.parent) in proc.stdout
    assert run(installed, "python", "-c", "import fixtures", cwd=tmp_path).returncode != 0


def test_submit_dry_run_writes_its_job_from_the_packaged_template(installed, clean, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "model": "segresnet", "datalist": str(clean / "datalist.json"), "output_dir": str(tmp_path / "run"),
        "roi_size": [32, 32, 32], "batch_size": 2, "num_patches_per_image": 2, "num_epochs": 20, "mem": "16G",
        "num_workers": 0, "network_width": 0.25}))
    proc = run(installed, "cellcheck", "submit", str(config), "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    job = (tmp_path / "run" / "job.sbatch").read_text()
    assert job.startswith("#!/bin/bash") and "#SBATCH --mem=16G" in job and "-m trainer" in job
    assert job == proc.stdout


@pytest.mark.parametrize("module, expect", [
    ("cellcheck", "Usage: cellcheck [OPTIONS] COMMAND"), ("trainer", "Usage: python -m trainer [OPTIONS]"),
])
def test_python_m_entry_points(installed, tmp_path, module, expect):
    proc = run(installed, "python", "-m", module, "--help", cwd=tmp_path)
    assert proc.returncode == 0 and expect in proc.stdout, proc.stderr


def test_gpu_check_entry_point_without_a_gpu(installed, tmp_path):
    proc = run(installed, "python", "-m", "trainer.gpu_check", "--out", str(tmp_path / "g.json"), cwd=tmp_path)
    assert proc.returncode == 0 and "no CUDA GPU visible" in proc.stdout, proc.stderr
