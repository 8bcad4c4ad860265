"""The class map: the field's 14 classes by default, another set from a file, canonical ids from classes.csv."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cellcheck.classes import DEFAULT_CLASS_MAP, canonical_classes, load_class_map
from cellcheck.cli import cli
from cellcheck.errors import CellcheckError


def test_the_default_map_is_the_fields_and_its_canonical_ids():
    assert DEFAULT_CLASS_MAP.names[0] == "ecs" and DEFAULT_CLASS_MAP.names[-1] == "nuc"
    # the challenge's classes.csv: ecs 1 ... er_lum 17, nuc 37 (a group of 20-29)
    assert DEFAULT_CLASS_MAP.canonical_ids == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 37)
    assert canonical_classes()["nuc"].members == frozenset(range(20, 30))
    assert DEFAULT_CLASS_MAP.overlapping() == []


def test_the_challenges_48_tested_classes_load_and_overlap(tmp_path):
    from importlib import resources

    tested = load_class_map(resources.files("cellcheck.data").joinpath("tested_classes.csv"))
    assert len(tested) == 48 and ("mito_mem", "mito") in tested.overlapping()


@pytest.mark.parametrize("name, text", [("c.yaml", "[nuc, mito]\n"), ("c.yml", "classes: [nuc, mito]\n"),
                                        ("c.csv", "name\nnuc\nmito\n"), ("c.txt", "nuc\nmito\n")])
def test_map_files(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    m = load_class_map(tmp_path / name)
    assert m.names == ("nuc", "mito") and m.label_value == {"nuc": 1, "mito": 2}


@pytest.mark.parametrize("text, says", [("[nuc, mitochondria]\n", "'mitochondria' not a CellMap class"),
                                        ("[nuc, nuc]\n", "listed twice"), ("{a: 1}\n", "YAML list")])
def test_bad_maps_name_the_file_and_the_fix(tmp_path, text, says):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(CellcheckError, match=says):
        load_class_map(tmp_path / "c.yaml")


def test_stats_of_the_stores_follow_the_map(clean, tmp_path):
    """Another map trains other classes: the instance class mito counted from its own arrays."""
    (tmp_path / "c.yaml").write_text("[nuc, mito, er]\n")
    result = CliRunner().invoke(cli, ["stats", str(clean / "zarr"), "--classes", str(tmp_path / "c.yaml"),
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["class"]: r for r in json.loads(result.output)["per_label"]}
    assert list(rows) == ["nuc", "mito", "er"] and [r["label"] for r in rows.values()] == [1, 2, 3]
    assert rows["mito"]["crops_present"] >= 1 and rows["nuc"]["crops_present"] >= 1


def test_an_unknown_class_is_exit_2(clean, tmp_path):
    (tmp_path / "c.yaml").write_text("[nucleus]\n")
    result = CliRunner().invoke(cli, ["audit", str(clean / "zarr"), "--classes", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2 and "'nucleus' not a CellMap class" in result.output
