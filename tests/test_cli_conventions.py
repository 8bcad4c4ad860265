"""One CLI, one language (issue 23, item 11): each test holds one convention every command keeps.

`-o/--output FILE` for a file and `--output-dir DIR` for a folder; `--format` is a report's format, by
one default rule; every --help gives the exit statuses; sizes carry their units; command lists are
whole sentences; counts are singular or plural as they should be. Old spellings still work, warned.
"""

import json
import sys

import click
import pytest
import yaml
from click.testing import CliRunner

from cellcheck.cli import cli


def run(args, **kwargs):
    return CliRunner().invoke(cli, args, **kwargs)


def commands(group=cli, path=("cellcheck",)):
    """(command path, command) for every command, subcommands included."""
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def options(command):
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


def test_a_file_is_dash_o_output_and_a_folder_output_dir():
    """audit, gate, stats, predict, profile, probe write a file with -o/--output; convert and infer a folder with
    --output-dir; no command spells it --out any more."""
    seen = {}
    for path, command in commands():
        for opt in options(command):
            names = set(opt.opts) | set(opt.secondary_opts)
            assert "--out" not in names, path
            if "--output" in names:
                assert names == {"-o", "--output"}, path
                seen[path[-1]] = "file"
            if "--output-dir" in names:
                assert isinstance(opt.type, click.Path) and not opt.type.file_okay, path
                seen[path[-1]] = "folder"
    assert seen == {"audit": "file", "gate": "file", "stats": "file", "predict": "file", "run": "file",
                    "plot": "file", "probe": "file", "convert": "folder", "infer": "folder"}


def test_old_output_spellings_still_work_with_one_warning(clean, tmp_path):
    """convert --out, profile --out and profile plot --out do what they did, saying once what to write instead
    (infer's --output and --format: tests/trainer/test_infer.py)."""
    def warning(command: str, old: str, new: str) -> str:
        return f"cellcheck {command}: {old} is deprecated and goes in the next release; write {new}"

    converted = run(["convert", str(clean / "zarr" / "jrc_fix-3"), "--resolution", "5.24,4,4", "--out",
                     str(tmp_path / "c"), "--folds", "2", "--jobs", "1", "--format", "json"])
    assert converted.exit_code == 0 and json.loads(converted.stdout)["datalist"] == str(tmp_path / "c" / "datalist.json")
    assert converted.stderr.splitlines() == [warning("convert", "--out", "--output-dir")]
    record = tmp_path / "m.jsonl"
    profiled = run(["profile", f"--out={record}", "--interval", "0.05", "--", sys.executable, "-c", "pass"])
    assert profiled.exit_code == 0 and record.stat().st_size > 0
    assert profiled.stderr.splitlines()[0] == warning("profile run", "--out", "--output")
    plotted = run(["profile", "plot", str(record), "--out", str(tmp_path / "m.png")])
    assert plotted.exit_code == 0 and (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    assert plotted.stderr.splitlines()[0] == warning("profile plot", "--out", "--output")


def test_format_is_always_a_report_format():
    """--format picks text, JSON or markdown everywhere; infer's data format is --file-format."""
    for path, command in commands():
        for opt in options(command):
            if "--format" in opt.opts:
                assert set(opt.type.choices) <= {"text", "json", "markdown"}, path
    [infer] = [c for p, c in commands() if p[-1] == "infer"]
    [fmt] = [o for o in options(infer) if "--file-format" in o.opts]
    assert list(fmt.type.choices) == ["nifti", "zarr"]


def test_every_report_defaults_to_json_when_piped(clean, tmp_path):
    """One rule for the default format (text on a terminal, JSON otherwise): stats no longer differs."""
    datalist = str(clean / "datalist.json")
    for args in (["audit", datalist], ["stats", datalist], ["gate", datalist, "--no-strict"],
                 ["convert", str(clean / "zarr" / "jrc_fix-3"), "--resolution", "5.24,4,4", "--output-dir",
                  str(tmp_path / "c"), "--folds", "2", "--jobs", "1"]):
        r = run(args)
        assert r.exit_code == 0, (args, r.output)
        assert isinstance(json.loads(r.stdout), dict), args


def test_every_help_says_its_exit_statuses():
    for path, command in [(("cellcheck",), cli), *commands()]:
        r = run([*path[1:], "--help"])
        assert r.exit_code == 0 and "Exit status" in r.stdout, path


def test_gpu_memory_takes_a_unit_and_a_bare_number_is_warned_mib(clean):
    base = ["predict", str(clean / "datalist.json"), "--model", "segresnet", "--roi", "32,32,32", "--batch", "1",
            "--no-max-batch", "--format", "json"]
    with_unit = run([*base, "--gpu-mem", "1500M"])
    in_gib = run([*base, "--gpu-mem", "1.5G"])
    bare = run([*base, "--gpu-mem", "1500"])
    assert with_unit.exit_code == bare.exit_code == 1 and with_unit.stderr == ""
    total = json.loads(with_unit.stdout)["gpu"]["total_bytes"]
    assert total == json.loads(bare.stdout)["gpu"]["total_bytes"] == 1500 * 2**20
    assert json.loads(in_gib.stdout)["gpu"]["total_bytes"] == 1536 * 2**20
    assert bare.stderr.count("\n") == 1 and "deprecated" in bare.stderr and "--gpu-mem 1500M" in bare.stderr


@pytest.mark.parametrize("command", [
    ["gate", "DATALIST"], ["predict", "DATALIST", "--model", "segresnet"], ["train", "--config", "CONFIG"],
    ["submit", "CONFIG", "--dry-run"],
])
def test_memory_without_a_unit_is_refused(clean, tmp_path, command):
    """`--mem 5` meant 5 bytes to cellcheck and 5 MB to SLURM: refused in one line, before anything runs."""
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"model": "segresnet", "datalist": str(clean / "datalist.json")}))
    args = [str(clean / "datalist.json") if a == "DATALIST" else str(config) if a == "CONFIG" else a for a in command]
    r = run([*args, "--mem", "5"])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert "'5' has no unit" in r.stderr and "5G" in r.stderr
    assert not (tmp_path / "runs").exists()


def test_command_lists_show_whole_sentences():
    """Every command's line in a --help list is a whole sentence that fits 80 columns, never cut with '...'."""
    for group in ([], ["profile"]):
        r = CliRunner().invoke(cli, [*group, "--help"], terminal_width=80)
        listed = r.stdout.split("Commands:\n", 1)[1].splitlines()
        assert listed and all(line.endswith(".") and "..." not in line and len(line) <= 80 for line in listed), listed


def test_counts_say_one_thing_and_many_things(clean_copy, tmp_path):
    """'1 error', '1 warning', '1 fold' and '1 problem', never '1 errors' or '1 problems'."""
    from datasets import read_datalist, write_datalist

    dl = read_datalist(clean_copy)
    dl["training"][0]["annotated_classes"] = ""
    r = run(["audit", str(write_datalist(clean_copy, dl, "one-error.json")), "--format", "text", "--select",
             "empty-annotation"])
    assert r.stdout.splitlines()[-1].startswith("FAILED: 10 cases, 1 error, 0 warnings, 0 info"), r.stdout
    config = clean_copy / "train.yaml"
    config.write_text(yaml.safe_dump({"model": "segresnet", "datalist": "datalist.json", "output_dir": "runs/one",
                                      "roi_size": [32, 32, 32], "batch_size": 2, "num_patches_per_image": 2,
                                      "num_epochs": 2, "mem": "64G"}))
    refused = run(["train", "--config", str(config)])
    assert refused.exit_code == 1 and "refused by the gate (1 problem, report in" in refused.stderr, refused.stderr
    assert "FAILED: 10 cases, 0 errors, 1 warning, 1 info" in refused.stderr  # the info: header-voxel-size
    predict = run(["predict", str(clean_copy / "datalist.json"), "--model", "segresnet", "--format", "text",
                   "--roi", "32,32,32", "--batch", "1", "--no-max-batch"])
    assert "Host RAM (1 rank x 8 workers" in predict.stdout
    converted = run(["convert", str(clean_copy / "zarr" / "jrc_fix-3"), "--resolution", "5.24,4,4", "--output-dir",
                     str(tmp_path / "c"), "--folds", "1", "--jobs", "1", "--format", "text"])
    assert converted.stdout.startswith("3 crops converted, 0 unchanged, 0 refused -> ") and "(1 fold)" in converted.stdout


def test_sizes_without_a_unit_for_budgets_are_read_as_before_with_a_warning(clean):
    """--memory-budget / --case-budget in bare bytes: still read as bytes this release, with a warning."""
    r = run(["audit", str(clean / "datalist.json"), "--format", "json", "--memory-budget", str(16 * 2**20)])
    assert r.exit_code == 0 and r.stderr.count("\n") == 1 and "--memory-budget 16777216B" in r.stderr
    assert json.loads(r.stdout)["passed"] is True
    assert sys.stdout is not None  # (the warning went to stderr, the report to stdout)
