"""Crop sizes from headers only: the split by fold, and crops whose header cannot be read (findings, counted)."""

import json
import math

from click.testing import CliRunner

from cellcheck.cli import cli
from cellcheck.memory.crops import read_crop_sizes


def datalist_entries(root):
    return json.loads((root / "datalist.json").read_text())["training"]


def test_sizes_come_from_the_headers_split_by_fold(clean):
    sizes = read_crop_sizes(clean / "datalist.json", fold=0)
    entries = datalist_entries(clean)
    assert len(sizes.train) == sum(e["fold"] != 0 for e in entries)
    assert len(sizes.validation) == sum(e["fold"] == 0 for e in entries)
    assert sizes.findings == [] and sizes.left_out == []
    import nibabel as nib

    for crop in sizes.all:
        entry = next(e for e in entries if e["image"].endswith(f"/{crop.case}.nii.gz"))
        assert crop.voxels == math.prod(nib.load(str(clean / entry["image"])).shape[:3])
    assert not read_crop_sizes(clean / "datalist.json", fold=None).validation  # no split: all train


def test_unreadable_and_missing_headers_are_findings_naming_the_crop(clean_copy):
    entries = datalist_entries(clean_copy)
    broken, missing = entries[0]["image"], entries[1]["image"]
    (clean_copy / broken).write_bytes(b"not a nifti file at all")
    (clean_copy / missing).unlink()
    sizes = read_crop_sizes(clean_copy / "datalist.json")
    found = {(f.check, f.case) for f in sizes.findings}
    case = lambda rel: rel.split("/")[-1].split(".")[0]  # noqa: E731
    assert found == {("unreadable", case(broken)), ("missing-file", case(missing))}
    assert sorted(sizes.left_out) == sorted([case(broken), case(missing)])
    assert len(sizes.all) == len(entries) - 2

    # the prediction says how many crops it left out, in the JSON and in the text
    args = [str(clean_copy / "datalist.json"), "--model", "dints", "--roi", "32,32,32", "--batch", "1",
            "--no-max-batch"]
    res = CliRunner().invoke(cli, ["predict", *args, "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ram"]["crops"]["left_out"] == 2 and out["dataset"]["skipped_unreadable"] == 2
    assert {f["case"] for f in out["findings"]} == {case(broken), case(missing)}
    text = CliRunner().invoke(cli, ["predict", *args, "--format", "text"]).stdout
    assert "LEFT OUT: 2 crops" in text and case(broken) in text
