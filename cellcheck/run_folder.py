"""The run folder (a config's output_dir): what a run leaves there, and the rule that no run overwrites another.

A folder holds a run once training has started in it: a checkpoint, `metrics.jsonl` or `memory.jsonl`
(a gate report alone is not a run: a refused start may be retried). Starting again in such a folder
without `--resume` is refused (exit 1) before anything is written; with `--resume` the run continues
from `last.pt` (from epoch 0 when it stopped before its first checkpoint) and appends to its records.
Plain file checks, no torch: `cellcheck submit` asks the same question before `sbatch`.
"""

from __future__ import annotations

from pathlib import Path

#: What a run writes, in the order the last line of a run lists them (checkpoints first, with sizes).
RUN_FILES = ("best.pt", "last.pt", "metrics.jsonl", "progress.png", "memory.png", "memory.jsonl", "gate.json",
             "memory_plan.json", "tensorboard")
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
