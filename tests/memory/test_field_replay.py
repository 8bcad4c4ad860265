"""The field's OOM replayed: 234 crops shaped as docs/INCIDENTS.md records them, the bundles of incidents 16 and 17.

The crops are header-only NIfTI files with sparse data (tests/memory/field_replay.py says how each
recorded number shaped them); the bundles are DiNTS bundles as the template generates them for a
CellMap task, with the label expansion as shipped (int64 on the way) or as the team fixed it.
"""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from cellcheck.cli import cli
from memory import field_replay as fr

GB, GiB = 1e9, 2**30


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    root = tmp_path_factory.mktemp("field")
    return fr.write_field_datalist(root / "data"), root


@pytest.fixture(scope="module")
def rows(field):
    datalist, root = field
    return fr.replay(datalist, root, epochs=200)


def test_the_crops_have_the_recorded_shape_distribution():
    crops = fr.field_crops()
    shapes = np.array([s for _, s, _ in crops])
    voxels = shapes.prod(1)
    train = np.sort([math.prod(s) for _, s, fold in crops if fold == 1])[::-1]
    assert len(crops) == 234 and len(train) == 198
    assert tuple(shapes.min(0)) == fr.MIN_SHAPE and np.median(voxels) == 400**3
    assert shapes.mean(0) == pytest.approx(fr.MEAN_SHAPE, rel=0.001)
    assert (train >= 500e6).sum() == 6  # six training crops of ~512M voxels
    assert train[:32].sum() * fr.TEAM_BYTES_PER_VOXEL / GB == pytest.approx(429, rel=0.005)  # the team's 32 largest
    assert fr.CROP247 not in {s for _, s, _ in crops}


def test_the_job_that_died_at_512G(rows, field):
    died = rows[0]["ram"]
    assert died["peak_bytes"] > 512 * GiB  # the worst case is far above what the job had
    assert died["fits"] is False and died["slurm_mem"] != "512G"
    t = died["typical"]
    # it ran a while first: a typical step inside 512G, of the order of the ~222 GB seen (a snapshot; the model's
    # median step is a conservative moment, 1.3x here), and per rank the ~70 GB of rank 1
    assert t["median_step_bytes"] < 512 * GiB and 222 * GB < t["median_step_bytes"] < 1.5 * 222 * GB
    assert 0.8 * 70 * GB < died["per_rank_bytes"] < 109 * GB
    # then an unlucky draw: a good share of epochs cross 512G somewhere
    assert 0.05 < t["p_epoch_exceeds_mem"] < 0.95
    giants = {case for case, shape, fold in fr.field_crops() if math.prod(shape) >= 500e6}
    assert {d["case"] for d in died["worst_case"]["drivers"][:6]} == giants

    datalist, root = field
    res = CliRunner().invoke(cli, ["predict", str(datalist), "--model", "dints", "--gpus", "2", "--mem", "512G",
                                               "--bundle", str(root / "dints_0"), "--no-max-batch", "--epochs", "50",
                                               "--format", "text"])
    assert res.exit_code == 1, res.output
    assert "DOES NOT FIT in --mem 512.00 GiB" in res.stdout and "driven by: " in res.stdout
    assert any(g in res.stdout for g in giants)


def test_the_two_fixes(rows):
    two, fixed = rows[1]["ram"], rows[2]["ram"]
    # 2 workers: the team's ~310 GB (--mem=350G) lies between a typical epoch and the worst case, which needs more
    assert two["typical"]["peak_bytes"] < 310 * GB < two["peak_bytes"]
    assert two["peak_bytes"] > 350 * GiB and two["fits"] is False
    assert two["typical"]["p_epoch_exceeds_mem"] < 0.05
    # the uint8 expansion at 8 workers: the worst case near the team's ~246 GB, and their 300G holds it
    assert fixed["peak_bytes"] == pytest.approx(246 * GB, rel=0.10)
    assert fixed["fits"] is True and fixed["typical"]["p_epoch_exceeds_mem"] == 0
    assert fixed["config"]["peak_bytes_per_voxel"] == 33  # the team's 33 B/voxel


def test_crop247_back_in_the_datalist_drives_everything(tmp_path):
    """The 6.5e9-voxel crop the cleanup removed: put back, the plan names it first."""
    from cellcheck.memory.bundle import bundle_chain, read_bundle_data
    from cellcheck.memory.crops import read_crop_sizes
    from cellcheck.memory.ram import Loader, predict_ram_over

    sizes = read_crop_sizes(fr.write_field_datalist(tmp_path / "data", with_crop247=True))
    chain = bundle_chain(read_bundle_data(fr.write_dints_bundle(tmp_path / "b", 8, "uint8", "uint8")), [96] * 3, 26)
    est = predict_ram_over(sizes.train, chain, Loader(gpus=2, workers=8, prefetch=2, batch=2), sizes.validation,
                           epochs=0)
    top = est.worst_case["drivers"][0]
    assert top["voxels"] == math.prod(fr.CROP247) and tuple(top["shape"]) == fr.CROP247
    assert json.dumps(est.to_json())  # serialisable as predict prints it
