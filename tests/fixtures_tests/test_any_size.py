"""The generator at any `--clean N`: every crop inside its raw volume, no two crops on the same raw voxels,
no crop number used twice, the default dataset's mix of crops at every size, and a clean audit.

`python -m fixtures make DIR --defects none --clean 40` used to place crops past store 1's raw volume
(blank images), and at 600 numbered clean crops 300-302 like the cell line's crops.
"""

from __future__ import annotations

from collections import Counter

import pytest

from cellcheck.audit import audit
from datasets import V3, expected
from fixtures import make_dataset
from fixtures.defects import DEFECT_IDS
from fixtures.generate import plan_crops
from fixtures.placement import place

SIZES = (3, 10, 40, 80, 150, 305, 600)


def _planned(n: int, defects: list[str]):
    crops = plan_crops(0, n, defects)
    return crops, place(0, crops)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("defects", [[], sorted(DEFECT_IDS)], ids=["none", "all"])
def test_every_crop_has_raw_voxels_of_its_own(n, defects):
    crops, sites = _planned(n, defects)
    numbers = [c.number for c in crops]
    assert len(numbers) == len(set(numbers))
    assert sum(c.defect is None and c.dataset != 3 for c in crops) == n
    for number, site in sites.items():
        mine = [c for c in crops if c.dataset == number]
        boxes = []
        for c in mine:
            start = c.pos
            stop = tuple(p + e for p, e in zip(c.pos, c.extent()))
            inside = all(0 <= a and b <= s for a, b, s in zip(start, stop, site.raw_shape))
            assert inside == (c.defect != "out-of-bounds"), (c.name, start, stop, site.raw_shape)
            boxes.append((c.name, start, stop))
        for i, (name, a0, a1) in enumerate(boxes):
            for other, b0, b1 in boxes[i + 1:]:
                assert not all(x0 < y1 and y0 < x1 for x0, x1, y0, y1 in zip(a0, a1, b0, b1)), (name, other)


def test_larger_datasets_keep_the_default_mix():
    def mix(n):
        crops = [c for c in plan_crops(0, n, []) if c.dataset in (1, 2)]
        roles = Counter(c.role for c in crops)
        return {r: roles[r] / len(crops) for r in ("full", "nuc", "ecs", "subset")}, sum(c.fold == 0 for c in crops) / len(crops)

    (default, fold0), (large, large_fold0) = mix(10), mix(600)
    assert large == pytest.approx(default, abs=0.02) and large_fold0 == pytest.approx(fold0, abs=0.05)


@pytest.fixture(scope="module")
def clean40(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean40") / "data"
    make_dataset(root, seed=0, defects="none", n_clean=40, v3=V3)
    return root


@pytest.mark.parametrize("view", ["datalist.json", "zarr"])
def test_a_larger_clean_dataset_audits_clean(clean40, view):
    root = clean40
    report = audit(root / view)
    assert [f for f in report.findings if f.severity.value != "info"] == []
    assert report.cases == len(expected(root)["cases"]["datalist" if view.endswith(".json") else "zarr"])
