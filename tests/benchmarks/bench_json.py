"""Reading what `pytest --benchmark-json` wrote, for the check scripts beside this file; a script's own result out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class BadInput(Exception):
    """The JSON is missing or not a pytest-benchmark file: the check scripts print it and exit 2."""


def read_benchmarks(path: Path) -> list[dict[str, Any]]:
    """The `benchmarks` list of a pytest-benchmark JSON file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadInput(f"benchmark JSON not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"cannot read benchmark JSON {path}: {exc}") from None
    benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(benchmarks, list):
        raise BadInput(f"{path}: no 'benchmarks' list (not a pytest-benchmark JSON?)")
    return benchmarks


def emit(result: dict[str, Any], path: Path | None) -> None:
    """Print a benchmark script's result as JSON, and write it to `path` too when one is given."""
    text = json.dumps(result, indent=1)
    print(text)
    if path:
        Path(path).write_text(text + "\n")
