"""Every console block of the README, run for real on generated data and compared with what it shows.

The tour starts where `bash scripts/demo.sh` leaves a fresh clone: a `demo/` dataset with every defect
planted. Each block's `$ ` lines run in order, in one working folder, with `.venv/bin/` meaning this
interpreter's folder; the lines after a command are its expected output. In an expected line, `…`
stands for any text (timings, process ids, temporary paths); a line that is only `…` stands for any
number of lines. Everything else must match exactly, so the README cannot drift from the program.

`python tests/test_readme.py` prints each block's real output (to update the README by hand).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
ELLIPSIS = "…"


@dataclass
class Step:
    """One `$ command` of a console block and the output the README shows for it."""

    line: int
    command: str
    expected: list[str]


def steps(text: str) -> list[Step]:
    """The `$ ` commands of every ```console block, in README order."""
    out: list[Step] = []
    in_block = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_block = line.strip() == "```console"
            continue
        if not in_block:
            continue
        if line.startswith("$ "):
            out.append(Step(number, line[2:], []))
        elif out:
            out[-1].expected.append(line)
    return out


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether `actual` fits `expected`, with `…` for any text in a line and a lone `…` for any lines."""
    patterns = [None if e.strip() == ELLIPSIS else re.compile(".*?".join(map(re.escape, e.split(ELLIPSIS))) + r"\Z")
                for e in expected]
    memo: dict[tuple[int, int], bool] = {}

    def fit(i: int, j: int) -> bool:
        if (i, j) not in memo:
            if i == len(patterns):
                memo[i, j] = j == len(actual)
            elif patterns[i] is None:
                memo[i, j] = fit(i + 1, j) or (j < len(actual) and fit(i, j + 1))
            else:
                memo[i, j] = j < len(actual) and bool(patterns[i].match(actual[j].rstrip())) and fit(i + 1, j + 1)
        return memo[i, j]

    return fit(0, 0)


def run_step(step: Step, cwd: Path, env: dict[str, str]) -> list[str]:
    """Run one command as the README writes it; stdout and stderr together, as a terminal shows them."""
    bindir = str(Path(sys.executable).parent) + "/"
    command = step.command.replace(".venv/bin/", bindir)
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)
    return [line.rstrip() for line in proc.stdout.rstrip("\n").splitlines()]


def tour_folder(tmp: Path) -> tuple[Path, dict[str, str]]:
    """A working folder like a fresh clone after `bash scripts/demo.sh`: the repo's files and `demo/`."""
    work = tmp / "clone"
    work.mkdir()
    for name in ("scripts", "slurm", "examples"):
        if (REPO / name).exists():
            os.symlink(REPO / name, work / name)
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONPATH": str(REPO)}
    env.pop("CELLCHECK_DEBUG", None)
    subprocess.run([sys.executable, "-m", "fixtures", "make", "demo", "--seed", "0", "--defects", "all"],
                   cwd=work, env=env, check=True, stdout=subprocess.DEVNULL)
    return work, env


@pytest.mark.slow
def test_every_console_block_prints_what_the_readme_shows(tmp_path):
    work, env = tour_folder(tmp_path)
    problems = []
    for step in steps(README.read_text()):
        actual = run_step(step, work, env)
        if not matches(step.expected, actual):
            problems.append(f"README.md:{step.line}: $ {step.command}\n--- shows\n" + "\n".join(step.expected)
                            + "\n--- prints\n" + "\n".join(actual))
    assert not problems, "\n\n".join(problems)


def test_the_config_shown_is_the_example_shipped():
    """The README's YAML block is examples/train.yaml, from its first key on (the tour copies that file)."""
    shown = re.search(r"```yaml\n(.*?)```", README.read_text(), re.S).group(1)
    example = (REPO / "examples" / "train.yaml").read_text()
    assert example[example.index("model:"):] == shown


def test_the_matcher():
    assert matches(["a", "…", "z"], ["a", "b", "c", "z"]) and matches(["a", "…", "z"], ["a", "z"])
    assert matches(["took … s"], ["took 1.9 s"]) and not matches(["took … s"], ["took 1.9 ms!"])
    assert not matches(["a", "b"], ["a", "b", "c"]) and not matches(["a"], [])


if __name__ == "__main__":  # print the real output of every block, to bring the README up to date
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder, environ = tour_folder(Path(tmp))
        for s in steps(README.read_text()):
            print(f"README.md:{s.line}: $ {s.command}")
            print("\n".join(run_step(s, folder, environ)))
            print()
        shutil.rmtree(folder, ignore_errors=True)
