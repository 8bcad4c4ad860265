"""`cellcheck convert` from the command line: exit status, the summary, usage errors in one line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cellcheck.cli import cli


def test_converts_and_summarises(clean, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["convert", str(clean / "zarr"), "--resolution", "8", "--out", str(out),
                                      "--format", "json", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["datalist"] == str(out / "datalist.json") and len(summary["converted"]) == 10
    assert {f["case"] for f in summary["refused"]} == {"crop300", "crop301", "crop302"}
    again = CliRunner().invoke(cli, ["convert", str(clean / "zarr"), "--resolution", "8", "--out", str(out),
                                     "--format", "text", "--strict"])
    assert again.exit_code == 1  # --strict: refused crops fail the run
    assert again.output.startswith("0 crops converted, 10 unchanged, 3 refused") and "refused crop300" in again.output


def test_the_cell_line_converts_at_its_own_voxel_size(clean, tmp_path):
    result = CliRunner().invoke(cli, ["convert", str(clean / "zarr"), "--resolution", "5.24,4,4", "--out",
                                      str(tmp_path / "o"), "--format", "json", "--folds", "2"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)["converted"]) == {"crop300", "crop301", "crop302"}


def test_usage_errors_are_one_line_and_exit_2(clean, tmp_path):
    runner = CliRunner()
    for args, words in (
        (["convert", str(tmp_path / "nowhere"), "--resolution", "8", "--out", str(tmp_path / "o")], "no such file"),
        (["convert", str(clean / "zarr"), "--resolution", "eight", "--out", str(tmp_path / "o")], "--resolution"),
        (["convert", str(tmp_path), "--resolution", "8", "--out", str(tmp_path / "o")], "no CellMap zarr stores"),
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2 and words in result.output, result.output
        assert "Traceback" not in result.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "datalist.json").write_text("{}")
    result = runner.invoke(cli, ["convert", str(clean / "zarr"), "--resolution", "8", "--out", str(tmp_path / "taken")])
    assert result.exit_code == 2 and "not written by cellcheck convert" in result.output


def test_a_crop_without_its_group_metadata_is_refused_by_name(clean_copy, tmp_path):
    """Issue 23, item 1: convert names the crop zarr cannot see instead of converting one crop fewer in silence."""
    group = clean_copy / "zarr" / "jrc_fix-2" / "jrc_fix-2.zarr" / "recon-1" / "labels" / "groundtruth" / "crop8"
    [meta] = [group / name for name in ("zarr.json", ".zgroup") if (group / name).exists()]
    meta.unlink()
    result = CliRunner().invoke(cli, ["convert", str(clean_copy / "zarr"), "--resolution", "8", "--out",
                                      str(tmp_path / "out"), "--format", "json", "--jobs", "1"])
    summary = json.loads(result.output)
    assert len(summary["converted"]) == 9
    refused = {f["case"]: f for f in summary["refused"]}
    assert set(refused) == {"crop8", "crop300", "crop301", "crop302"}
    assert refused["crop8"]["check"] == "unreadable" and meta.name in refused["crop8"]["message"]
