"""``python -m fixtures make`` through a subprocess: exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fixtures", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_make_none(tmp_path):
    out = tmp_path / "ds"
    r = run("make", str(out), "--seed", "3", "--defects", "none", "--clean", "3")
    assert r.returncode == 0, r.stderr
    exp = json.loads((out / "expected.json").read_text())
    assert exp["seed"] == 3 and exp["findings"] == [] and exp["clean_cases"] == exp["cases"]
    assert len(json.loads((out / "datalist.json").read_text())["training"]) == 3


def test_unknown_defect_exit_2(tmp_path):
    r = run("make", str(tmp_path / "ds"), "--defects", "blank-image,not-a-defect")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "not-a-defect" in r.stderr
    assert not (tmp_path / "ds").exists()


def test_non_empty_dir_exit_2(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    r = run("make", str(tmp_path), "--defects", "none")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "not an empty directory" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
