"""`cellcheck convert` from the command line: exit status, the summary, usage errors in one line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cellcheck.cli import cli


def test_converts_and_summarises(clean, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["convert", str(clean / "zarr"), "--resolution", "8", "--output-dir", str(out),
                                      "--format", "json", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["datalist"] == str(out / "datalist.json") and len(summary["converted"]) == 10
    assert {f["case"] for f in summary["refused"]} == {"crop300", "crop301", "crop302"}
    again = CliRunner().invoke(cli, ["convert", str(clean / "zarr"), "--resolution", "8", "--output-dir", str(out),
                                     "--format", "text", "--strict"])
    assert again.exit_code == 1  # --strict: refused crops fail the run
    assert again.output.startswith("0 crops converted, 10 unchanged, 3 refused") and "refused crop300" in again.output


def test_the_cell_line_converts_at_its_own_voxel_size(clean, tmp_path):
    result = CliRunner().invoke(cli, ["convert", str(clean / "zarr"), "--resolution", "5.24,4,4", "--output-dir",
                                      str(tmp_path / "o"), "--format", "json", "--folds", "2"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)["converted"]) == {"crop300", "crop301", "crop302"}


def test_usage_errors_are_one_line_and_exit_2(clean, tmp_path):
    runner = CliRunner()
    for args, words in (
        (["convert", str(tmp_path / "nowhere"), "--resolution", "8", "--output-dir", str(tmp_path / "o")], "no such file"),
        (["convert", str(clean / "zarr"), "--resolution", "eight", "--output-dir", str(tmp_path / "o")], "--resolution"),
        (["convert", str(tmp_path), "--resolution", "8", "--output-dir", str(tmp_path / "o")], "no CellMap zarr stores"),
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2 and words in result.output, result.output
        assert "Traceback" not in result.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "datalist.json").write_text("{}")
    result = runner.invoke(cli, ["convert", str(clean / "zarr"), "--resolution", "8", "--output-dir", str(tmp_path / "taken")])
    assert result.exit_code == 2 and "not written by cellcheck convert" in result.output


def test_a_crop_without_its_group_metadata_is_refused_by_name(clean_copy, tmp_path):
    """Issue 23, item 1: convert names the crop zarr cannot see instead of converting one crop fewer in silence."""
    group = clean_copy / "zarr" / "jrc_fix-2" / "jrc_fix-2.zarr" / "recon-1" / "labels" / "groundtruth" / "crop8"
    [meta] = [group / name for name in ("zarr.json", ".zgroup") if (group / name).exists()]
    meta.unlink()
    result = CliRunner().invoke(cli, ["convert", str(clean_copy / "zarr"), "--resolution", "8", "--output-dir",
                                      str(tmp_path / "out"), "--format", "json", "--jobs", "1"])
    summary = json.loads(result.output)
    assert len(summary["converted"]) == 9
    refused = {f["case"]: f for f in summary["refused"]}
    assert set(refused) == {"crop8", "crop300", "crop301", "crop302"}
    assert refused["crop8"]["check"] == "unreadable" and meta.name in refused["crop8"]["message"]


def test_a_stray_file_is_left_alone_and_a_file_in_the_way_stops_the_run(clean, tmp_path):
    """Issue 23, item 12, as the README says: files convert would not write stay; one it would replace stops it."""
    out = tmp_path / "out"
    (out / "imagesTr").mkdir(parents=True)
    stray = {out / "notes.txt": "mine", out / "imagesTr" / "other.nii.gz": "not a crop of these stores"}
    for path, text in stray.items():
        path.write_text(text)
    args = ["convert", str(clean / "zarr"), "--resolution", "8", "--output-dir", str(out), "--format", "json",
            "--jobs", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert {p: p.read_text() for p in stray} == stray
    out2 = tmp_path / "taken"
    (out2 / "labelsTr").mkdir(parents=True)
    (out2 / "labelsTr" / "crop1.nii.gz").write_text("someone's label")
    result = CliRunner().invoke(cli, [*args[:5], str(out2), *args[6:]])
    assert result.exit_code == 2 and "labelsTr/crop1.nii.gz" in result.stderr
    assert "not written by cellcheck convert" in result.stderr and "--overwrite" in result.stderr
    assert sorted(p.relative_to(out2).as_posix() for p in out2.rglob("*")) == ["labelsTr", "labelsTr/crop1.nii.gz"]
