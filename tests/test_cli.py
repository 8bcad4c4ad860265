"""The CLI contract: formats, exit codes 0/1/2, --select/--ignore/--strict, atomic --output, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellcheck.cli import cli
from datasets import expected, read_datalist


def run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_json_report_contract(defects_all):
    r = run(["audit", str(defects_all / "datalist.json"), "--format", "json"])
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    assert report["version"] == 1 and report["passed"] is False
    assert report["cases"] == len(expected(defects_all)["cases"]["datalist"])
    assert set(report["summary"]) == {"error", "warning", "info"}
    assert report["summary"]["error"] == sum(f["severity"] == "error" for f in report["findings"])
    f = report["findings"][0]
    assert set(f) == {"check", "severity", "case", "path", "message", "details"}
    assert {"per_label", "images"} <= set(report["stats"])


def test_text_and_markdown(defects_all):
    text = run(["audit", str(defects_all / "datalist.json"), "--format", "text"])
    assert text.exit_code == 1
    assert "FAILED" in text.stdout.splitlines()[-1]
    assert "[blank-image]" in text.stdout
    md = run(["audit", str(defects_all / "datalist.json"), "--format", "markdown"])
    assert md.stdout.startswith("### cellcheck audit: **failed**")
    assert "| error | `blank-image` |" in md.stdout


def test_clean_exits_zero(clean):
    r = run(["audit", str(clean / "datalist.json"), "--format", "json"])
    assert r.exit_code == 0, r.stdout
    assert json.loads(r.stdout)["passed"] is True


def test_select_and_ignore(defects_all):
    sel = json.loads(run(["audit", str(defects_all / "datalist.json"), "--format", "json", "--select", "blank-image"]).stdout)
    assert {f["check"] for f in sel["findings"]} == {"blank-image"}
    ign = json.loads(run(["audit", str(defects_all / "datalist.json"), "--format", "json", "--ignore", "blank-image,missing-file"]).stdout)
    assert not {"blank-image", "missing-file"} & {f["check"] for f in ign["findings"]}
    warn_only = run(["audit", str(defects_all / "datalist.json"), "--format", "json", "--select", "partial-blank"])
    assert warn_only.exit_code == 0  # warnings alone pass...
    strict = run(["audit", str(defects_all / "datalist.json"), "--format", "json", "--select", "partial-blank", "--strict"])
    assert strict.exit_code == 1  # ...unless --strict


def test_unknown_check_id_is_usage_error(defects_all):
    r = run(["audit", str(defects_all / "datalist.json"), "--select", "blank"])
    assert r.exit_code == 2
    assert "unknown check id(s) blank" in r.stderr


def test_output_written_atomically_and_nothing_else(defects_all, tmp_path):
    out = tmp_path / "report.json"
    r = run(["audit", str(defects_all / "datalist.json"), "--output", str(out), "--format", "json"])
    assert r.exit_code == 1 and r.stdout == ""
    assert json.loads(out.read_text())["passed"] is False
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left behind


def test_output_into_missing_folder_is_one_line(defects_all, tmp_path):
    r = run(["audit", str(defects_all / "datalist.json"), "--output", str(tmp_path / "no" / "r.json")])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and "choose another --output" in r.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"training": [', "malformed JSON at line 1, column"),
        ('{"images": []}', "not a MONAI datalist"),
        ("", "malformed JSON"),
    ],
)
def test_bad_datalist_is_one_line_exit_2(tmp_path, content, message):
    p = tmp_path / "datalist.json"
    p.write_text(content)
    r = run(["audit", str(p)])
    assert r.exit_code == 2
    assert message in r.stderr and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("option", ["--memory-budget", "--case-budget"])
def test_zero_budget_is_a_usage_error(clean, option):
    r = CliRunner().invoke(cli, ["audit", str(clean / "datalist.json"), option, "0"])
    assert r.exit_code == 2 and "positive size" in r.output


def test_folder_with_stores_and_a_datalist_says_what_it_audited(clean):
    r = run(["audit", str(clean), "--format", "json"])
    report = json.loads(r.stdout)
    assert r.exit_code == 0 and report["cases"] == len(expected(clean)["cases"]["zarr"])
    [note] = report["notes"]
    assert "audited the stores" in note and str(clean / "datalist.json") in note


def test_folder_without_data_is_exit_2(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    r = run(["audit", str(tmp_path)])
    assert r.exit_code == 2 and "no CellMap zarr stores" in r.stderr


def test_missing_path_is_exit_2(tmp_path):
    r = run(["audit", str(tmp_path / "nope.json")])
    assert r.exit_code == 2 and "no such file" in r.stderr


def run_unprivileged(args, cwd, warm):
    """The CLI as a user the files deny: as root, audit `warm` once (so every lazy import is done while
    the interpreter's own files are still readable), then drop to `nobody` and run."""
    code = (
        "import os, sys, pathlib, cellcheck.cli, cellcheck.audit\n"
        "from cellcheck.audit.options import AuditOptions\n"
        "if os.geteuid() == 0:\n"
        "    for view in ('datalist.json', 'zarr'):\n"
        "        for jobs in (1, 2):\n"
        "            cellcheck.audit.audit(pathlib.Path(os.environ['WARM']) / view, options=AuditOptions(jobs=jobs))\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        "cellcheck.cli.main(sys.argv[1:])\n"
    )
    env = {**os.environ, "WARM": str(warm)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


@pytest.fixture
def shared_copy(clean):
    """A copy of the clean dataset in a folder `nobody` can enter (pytest's tmp folders are private)."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="cellcheck-perm-"))
    base.chmod(0o755)
    shutil.copytree(clean, base / "data")
    for p in [base / "data", *(base / "data").rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    yield base / "data"
    shutil.rmtree(base)


def test_unreadable_datalist_is_exit_2(shared_copy, clean):
    (shared_copy / "datalist.json").chmod(0)
    r = run_unprivileged(["audit", str(shared_copy / "datalist.json")], shared_copy, clean)
    assert r.returncode == 2, r.stderr
    assert "permission denied" in r.stderr and r.stderr.count("\n") == 1


def test_unreadable_image_is_a_finding(shared_copy, clean):
    entry = read_datalist(shared_copy)["training"][0]
    (shared_copy / entry["image"]).chmod(0)
    r = run_unprivileged(["audit", str(shared_copy / "datalist.json"), "--format", "json"], shared_copy, clean)
    assert r.returncode == 1, r.stderr
    (f,) = [f for f in json.loads(r.stdout)["findings"] if f["check"] == "unreadable"]
    assert f["path"] == entry["image"] and "permission denied" in f["message"]


def test_unreadable_folder_is_exit_2(shared_copy, clean):
    (shared_copy / "zarr").chmod(0)
    r = run_unprivileged(["audit", str(shared_copy / "zarr")], shared_copy, clean)
    assert r.returncode == 2 and "permission denied" in r.stderr, r.stderr


def test_checks_lists_every_id():
    from cellcheck.findings import CHECKS

    r = run(["checks"])
    assert r.exit_code == 0
    assert [line.split()[0] for line in r.stdout.splitlines()] == list(CHECKS)


def test_console_script_in_a_real_subprocess(defects_all, tmp_path):
    exe = Path(sys.executable).parent / "cellcheck"
    proc = subprocess.run([str(exe), "audit", str(defects_all / "zarr"), "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    found = {(f["check"], f["case"]) for f in report["findings"]}
    want = {(r["check"], r["case"]) for r in expected(defects_all)["findings"] if r["view"] == "zarr"}
    assert want <= found
    bad = subprocess.run([str(exe), "audit", str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("cellcheck: ") and bad.stderr.count("\n") == 1


def test_audit_stats_and_predict_count_the_same_cases(defects_all, tmp_path):
    """One case, one count: a duplicated entry and the validation array's copies are counted once by all three;
    what could not be read is counted too, and said to be left out (of the statistics, of the memory plan)."""
    datalist = str(defects_all / "datalist.json")
    audit = json.loads(run(["audit", datalist, "--format", "json"]).stdout)
    stats = run(["stats", datalist, "--format", "json", "--output", str(tmp_path / "stats.json")])
    assert stats.exit_code == 1  # cases left out of the statistics: named, and the run says it is partial
    images = json.loads((tmp_path / "stats.json").read_text())["images"]
    predict = run(["predict", datalist, "--model", "segresnet", "--format", "json", "--no-max-batch"])
    plan = json.loads(predict.stdout)["dataset"]
    entries = read_datalist(defects_all)
    listed = [e["image"] for section in ("training", "validation") for e in entries.get(section, [])]
    assert len(set(listed)) < len(listed)  # the planted duplicate and the validation copies
    assert audit["cases"] == images["cases"] == plan["n_cases"] + plan["skipped_unreadable"]
    assert images["unread"] > 0  # a corrupt crop (unreadable voxels): counted, not in the statistics
    assert set(images["left_out"]) == {f["case"] for f in audit["findings"]
                                       if f["check"] in ("unreadable", "missing-file", "datalist-invalid") and f["case"]}


def _drop_group_metadata(group: Path) -> str:
    """Delete a zarr group's own metadata file (zarr.json or .zgroup, whichever it has); return its name."""
    [meta] = [group / name for name in ("zarr.json", ".zgroup") if (group / name).exists()]
    meta.unlink()
    return meta.name


@pytest.mark.parametrize("store, crop", [("jrc_fix-2", "crop8"), ("jrc_fix-1", "crop1")])
def test_a_crop_without_its_group_metadata_is_counted_and_named(clean_copy, store, crop):
    """Issue 23, item 1: a crop whose zarr.json (.zgroup) is gone is invisible to zarr; it must not vanish."""
    group = clean_copy / "zarr" / store / f"{store}.zarr" / "recon-1" / "labels" / "groundtruth" / crop
    meta = _drop_group_metadata(group)
    r = run(["audit", str(clean_copy / "zarr"), "--format", "json"])
    report = json.loads(r.stdout)
    assert r.exit_code == 1 and report["cases"] == len(expected(clean_copy)["cases"]["zarr"])
    [f] = report["findings"]
    assert (f["check"], f["severity"], f["case"]) == ("unreadable", "error", crop)
    assert meta in f["message"] and "re-download" in f["message"]
