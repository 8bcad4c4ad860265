"""DataAnalyzer's own per-case output, read by label value: the table it should have printed.

MONAI's real DataAnalyzer runs on the generated dataset; its `datastats_by_case.yaml` must give the
same per-label table as cellcheck's pass over the voxels of the same files.
"""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from click.testing import CliRunner

from cellcheck.cli import cli


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory, clean):
    """MONAI DataAnalyzer's output for the clean dataset (label stats, no histograms or components)."""
    from monai.apps.auto3dseg import DataAnalyzer

    out = tmp_path_factory.mktemp("analyzer")
    DataAnalyzer(str(clean / "datalist.json"), str(clean), output_path=str(out / "datastats.yaml"),
                 device="cpu", worker=0, do_ccp=False, hist_bins=0).get_all_case_stats()
    return out / "datastats_by_case.yaml"


def stats_json(*args):
    result = CliRunner().invoke(cli, ["stats", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_by_case_file_gives_the_voxel_table(analyzed, clean):
    from_file = stats_json(str(analyzed), "--datalist", str(clean / "datalist.json"))
    from_voxels = stats_json(str(clean / "datalist.json"))
    assert from_file["per_label"] == from_voxels["per_label"]
    nuc = next(r for r in from_file["per_label"] if r["class"] == "nuc")
    assert nuc["crops_present"] >= 1 and nuc["mean_fg_pct_present"] > 30  # not DataAnalyzer's 0 %
    assert from_file["images"]["shape"] == from_voxels["images"]["shape"]


def test_corrected_datastats_is_indexed_by_label_value(analyzed, clean, tmp_path):
    out = tmp_path / "corrected.yaml"
    stats_json(str(analyzed), "--datalist", str(clean / "datalist.json"), "--datastats-out", str(out))
    doc = yaml.safe_load(out.read_text())
    entries = doc["stats_summary"]["label_stats"]["label"]
    assert [e["label_value"] for e in entries] == list(range(15)) and entries[14]["class"] == "nuc"
    assert entries[14]["foreground_percentage"] > 30


def test_without_a_datalist_every_case_counts_as_annotated(analyzed, tmp_path):
    lone = tmp_path / "datastats_by_case.yaml"
    lone.write_bytes(analyzed.read_bytes())
    rows = stats_json(str(lone))["per_label"]
    cases = len(yaml.safe_load(lone.read_text())["stats_by_cases"])
    assert {r["crops_annotated"] for r in rows} == {cases}


def test_a_field_sized_file(analyzed, tmp_path):
    """238 cases and about a megabyte, like the field's file: every case read, grouped by value."""
    doc = yaml.safe_load(analyzed.read_text())
    template = doc["stats_by_cases"]
    records = []
    for i in range(238):
        rec = copy.deepcopy(template[i % len(template)])
        rec["image_filepath"] = f"/data/imagesTr/crop{i}.nii.gz"
        rec["label_stats"]["label"] = [{**e, "ncomponents": 3, "shape": [[12, 14, 9]] * 20}
                                       for e in rec["label_stats"]["label"]]
        records.append(rec)
    big = tmp_path / "datastats_by_case.yaml"
    big.write_text(yaml.safe_dump({"stats_summary": doc["stats_summary"], "stats_by_cases": records}))
    assert big.stat().st_size > 800_000
    rows = stats_json(str(big))["per_label"]
    assert max(r["crops_annotated"] for r in rows) == 238


@pytest.mark.parametrize("text, says", [
    ("stats_summary: {n_cases: 1}\n", "no 'stats_by_cases' list"),
    ("stats_by_cases:\n- {image_filepath: a.nii.gz}\n", "no label_stats"),
    ("stats_by_cases: [\n", "not valid YAML"),
])
def test_bad_files_are_one_line_and_exit_2(tmp_path, text, says):
    bad = tmp_path / "datastats_by_case.yaml"
    bad.write_text(text)
    result = CliRunner().invoke(cli, ["stats", str(bad)])
    assert result.exit_code == 2 and says in result.output and len(result.output.strip().splitlines()) == 1
