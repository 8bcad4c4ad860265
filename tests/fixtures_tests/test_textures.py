"""The second raw-EM model ("imaging": staining, blur, 1/f texture, shot noise): an audit-clean dataset whose
membranes are darker than the cytosol around them, and whose crops differ from each other in contrast."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from cellcheck.audit import audit
from cellcheck.classes import LABEL_VALUE
from datasets import V3, read_datalist
from fixtures import make_dataset

MEMBRANES = [LABEL_VALUE[n] for n in ("pm", "mito_mem", "golgi_mem", "ves_mem", "endo_mem", "er_mem")]


@pytest.fixture(scope="module")
def imaging(tmp_path_factory):
    root = tmp_path_factory.mktemp("imaging") / "data"
    make_dataset(root, seed=4, defects="none", n_clean=10, v3=V3, texture="imaging")
    return root


def test_an_imaging_dataset_audits_clean(imaging):
    for view in ("datalist.json", "zarr"):
        report = audit(imaging / view)
        assert [f for f in report.findings if f.severity.value != "info"] == [], view


def test_membranes_are_dark_and_contrast_varies_between_crops(imaging):
    gaps = []
    for e in read_datalist(imaging)["training"]:
        image = np.asarray(nib.load(imaging / e["image"]).dataobj).astype(float)
        label = np.asarray(nib.load(imaging / e["label"]).dataobj)
        membrane = np.isin(label, MEMBRANES)
        if membrane.sum() > 50 and (label == 0).sum() > 50:
            gaps.append((image[label == 0].mean() - image[membrane].mean()) / image.std())
    assert len(gaps) >= 5 and min(gaps) > 0 and max(gaps) > 1.5 * min(gaps)


def test_unknown_texture_is_refused(tmp_path):
    with pytest.raises(ValueError, match="texture"):
        make_dataset(tmp_path / "d", texture="glossy")
