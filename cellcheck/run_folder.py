"""The run folder (a config's output_dir): what a run leaves there, and the rule that no run overwrites another.

A folder holds a run once training has started in it: a checkpoint, `metrics.jsonl` or `memory.jsonl`
(a gate report alone is not a run: a refused start may be retried). Starting again in such a folder
without `--resume` is refused (exit 1) before anything is written; with `--resume` the run continues
from `last.pt` (from epoch 1 when it stopped before its first checkpoint) and appends to its records.

A run's records are append-only across resumes: `gate.json` and `memory_plan.json` are the reports of
the start that began it; every later start (a resume, refused by the gate or with nothing left to do
included) appends its gate report and memory plan as one line to `gate.jsonl` and `memory_plan.jsonl`
beside them (`save_start_record`), and never writes over the originals. Plain file work, no torch:
`cellcheck submit` asks the same question before `sbatch`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cellcheck.files import write_atomic

#: What a run writes, in the order the last line of a run lists them (checkpoints first, with sizes).
RUN_FILES = ("best.pt", "last.pt", "metrics.jsonl", "progress.png", "memory.png", "memory.jsonl", "gate.json",
             "memory_plan.json", "gate.jsonl", "memory_plan.jsonl", "tensorboard")
#: Files whose presence means training has started in the folder.
RUN_MARKS = ("last.pt", "best.pt", "metrics.jsonl", "memory.jsonl")


def held_run(out: Path) -> list[str]:
    """The files in `out` that show a run has started there (empty: no run)."""
    return [name for name in RUN_MARKS if (out / name).exists()]


def rerun_refusal(out: Path, resume_option: str = "--resume") -> str | None:
    """The one line refusing a new run in `out` when it holds one, else None."""
    held = held_run(out)
    if not held:
        return None
    return (f"{out} already holds a run ({', '.join(held)}); continue it with {resume_option}, "
            "or give the new run a new output_dir (--set output_dir=...)")


def log_of(name: str) -> str:
    """The append-only log beside a start record: gate.json -> gate.jsonl."""
    return name.removesuffix(".json") + ".jsonl"


def save_start_record(out: Path, name: str, record: Any) -> Path:
    """Save one start's `name` (gate.json, memory_plan.json): the file itself when no run is in `out` yet,
    else one line appended to its log (`log_of`), so a resume never replaces what the run's start recorded.

    `record` is JSON-able, or JSON text already rendered (a report). Returns the path written. Call it
    before the run writes anything of its own (a checkpoint, a metric).
    """
    text = record if isinstance(record, str) else json.dumps(record, indent=2, default=str) + "\n"
    if not held_run(out):
        path = out / name
        write_atomic(path, text)
        return path
    path = out / log_of(name)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"time": round(time.time(), 3), "record": json.loads(text)}) + "\n")
    return path


def latest_start_record(out: Path, name: str) -> Any:
    """The most recent start's `name` (its log's last readable line, else the file), or None."""
    log = out / log_of(name)
    if log.is_file():
        for line in reversed(log.read_text(encoding="utf-8").splitlines()):
            try:
                return json.loads(line)["record"]
            except (ValueError, KeyError, TypeError):
                continue
    path = out / name
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8") or "null")
        except ValueError:
            return None
    return None
