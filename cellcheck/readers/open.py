"""One way to open a volume: a NIfTI file or a zarr image, chosen by its name and metadata."""

from __future__ import annotations

import os
from pathlib import Path

from cellcheck.readers.nifti import NiftiVolume
from cellcheck.readers.volume import ReadError, Volume
from cellcheck.readers.zarr_volume import ZarrVolume


def open_volume(path: Path) -> Volume:
    """Open a NIfTI file or an OME-NGFF zarr image by its name; raises ReadError when it cannot."""
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise ReadError(path, "permission denied; make it readable for the user running the audit")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return NiftiVolume(path)
    if ".zarr" in name or (path / "zarr.json").exists() or (path / ".zarray").exists() or (path / ".zgroup").exists():
        return ZarrVolume.open(path)
    raise ReadError(path, "not a NIfTI (.nii, .nii.gz) or zarr file")
