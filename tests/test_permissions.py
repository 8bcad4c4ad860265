"""Every file and folder cellcheck writes gets the permissions the umask allows (issue 23, item 7).

Atomic writes go through a temporary file (born 0600) or folder (born 0700) and a rename: on a shared
cluster folder colleagues could not read the data, the checkpoints or the plots. Here every command
that writes runs as a user with umask 002 (a group-shared project folder) and everything it wrote must
be 0664 (files) or 0775 (folders): the umask's modes, not the temporary file's and not a fixed 0644.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

UMASK = 0o002
FILE_MODE, FOLDER_MODE = 0o666 & ~UMASK, 0o777 & ~UMASK
BIN = Path(sys.executable).parent


def cellcheck(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed command, as a user with umask 002 runs it."""
    proc = subprocess.run([str(BIN / "cellcheck"), *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: os.umask(UMASK), env={**os.environ, "PYTORCH_CUDA_ALLOC_CONF": ""})
    assert proc.returncode in (0, 1), proc.stderr
    return proc


@pytest.fixture(scope="module")
def written(clean, tmp_path_factory) -> Path:
    """One folder holding what each writer wrote: a conversion, reports, a training run, inference, plots."""
    out = tmp_path_factory.mktemp("shared")
    cellcheck("convert", str(clean / "zarr"), "--resolution", "8", "--output-dir", str(out / "converted"),
              "--jobs", "1", cwd=out)
    cellcheck("audit", str(clean / "datalist.json"), "-o", str(out / "audit.json"), cwd=out)
    cellcheck("stats", str(clean / "datalist.json"), "-o", str(out / "stats.json"), "--datastats-out",
              str(out / "datastats.yaml"), cwd=out)
    config = out / "train.yaml"
    config.write_text(yaml.safe_dump({
        "model": "segresnet", "datalist": str(clean / "datalist.json"), "output_dir": str(out / "run"),
        "roi_size": [32, 32, 32], "batch_size": 2, "num_patches_per_image": 2, "num_epochs": 1, "smoke_test": True,
        "max_steps_per_epoch": 1, "num_workers": 0, "mem": "64G", "network_width": 0.25}))
    cellcheck("gate", "--config", str(config), "-o", str(out / "gate-report.json"), cwd=out)
    cellcheck("train", "--config", str(config), cwd=out)
    image = str(clean / "imagesTr" / "crop1.nii.gz")
    cellcheck("infer", "--checkpoint", str(out / "run" / "best.pt"), image, "--output-dir", str(out / "maps"), cwd=out)
    cellcheck("infer", "--checkpoint", str(out / "run" / "best.pt"), image, "--output-dir", str(out / "zarr-maps"),
              "--file-format", "zarr", cwd=out)
    cellcheck("profile", "plot", str(out / "run" / "memory.jsonl"), "-o", str(out / "memory.png"), cwd=out)
    return out


WRITERS = {
    "converted NIfTI images and labels": ["converted/imagesTr/*.nii.gz", "converted/labelsTr/*.nii.gz"],
    "converted datalist": ["converted/datalist.json"],
    "conversion provenance": ["converted/provenance/*"],
    "audit and stats reports (-o)": ["audit.json", "stats.json", "datastats.yaml", "gate-report.json"],
    "checkpoints": ["run/best.pt", "run/last.pt"],
    "the run's PNGs": ["run/progress.png", "run/memory.png"],
    "the run's gate report and memory plan": ["run/gate.json", "run/memory_plan.json"],
    "the run's appended records": ["run/metrics.jsonl", "run/memory.jsonl"],
    "infer NIfTI output": ["maps/*_probabilities.nii.gz"],
    "infer zarr output, the folder and all inside": ["zarr-maps/*_probabilities.zarr", "zarr-maps/*.zarr/**/*"],
    "profile plot": ["memory.png"],
}


@pytest.mark.parametrize("writer", WRITERS)
def test_each_writer_honours_the_umask(written, writer):
    paths = [p for pattern in WRITERS[writer] for p in written.glob(pattern)]
    assert paths, f"{writer}: nothing written at {WRITERS[writer]}"
    wrong = {str(p.relative_to(written)): oct(p.stat().st_mode & 0o777) for p in paths
             if p.stat().st_mode & 0o777 != (FOLDER_MODE if p.is_dir() else FILE_MODE)}
    assert not wrong, f"{writer}: want {oct(FILE_MODE)} files, {oct(FOLDER_MODE)} folders; got {wrong}"


def test_the_folders_commands_create_honour_it_too(written):
    folders = [written / name for name in ("converted", "converted/imagesTr", "converted/provenance", "run", "maps")]
    assert {str(f.relative_to(written)): oct(f.stat().st_mode & 0o777) for f in folders} == {
        str(f.relative_to(written)): oct(FOLDER_MODE) for f in folders}
