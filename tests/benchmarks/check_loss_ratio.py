"""Print the loss benchmark's speed and memory ratios: ours against MONAI's one-hot composition and the oracle.

Usage: python tests/benchmarks/check_loss_ratio.py BENCHMARK.json

Reads the JSON written by ``pytest tests/benchmarks/test_loss_benchmark.py --benchmark-only
--benchmark-json=BENCHMARK.json`` and prints, per benchmark group, median times, speed ratios
(monai/ours, reference/ours), extra memory and its ratio to the logits, and whether ours meets
the target (>= 1.5x faster than the MONAI one-hot composition).  Wall-clock ratios on a shared
machine are a measurement, not a gate: the exit status is 0 whatever they are, and 2 (one line on
stderr) if the file is missing, unreadable or lacks the three implementations.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench_json import BadInput, read_benchmarks

TARGET_SPEEDUP = 1.5  # over the MONAI one-hot composition (issue 14), reported, not enforced
IMPLS = ("reference", "monai", "ours")


def load_groups(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{group: {impl: {"median": s, "extra": extra_info}}} from a pytest-benchmark JSON file."""
    benchmarks = read_benchmarks(path)
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for bench in benchmarks:
        try:
            extra = bench.get("extra_info") or {}
            impl = extra.get("impl")
            if impl not in IMPLS:
                continue  # some other benchmark in the same file
            median = float(bench["stats"]["median"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"{path}: malformed benchmark entry ({exc!r})") from None
        groups.setdefault(str(bench.get("group")), {})[impl] = {"median": median, "extra": extra}
    complete = {g: v for g, v in groups.items() if all(i in v for i in IMPLS)}
    if not complete:
        raise BadInput(f"{path}: no benchmark group holds all of {', '.join(IMPLS)} (ran test_loss_benchmark.py?)")
    return complete


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


def report(groups: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Print one table per group, the ratios, and the target's verdict."""
    for group, impls in groups.items():
        ours = impls["ours"]
        print(f"\n{group}  (mode={ours['extra'].get('mode', '?')}, threads={ours['extra'].get('threads', '?')})")
        print(f"{'impl':<10} {'median ms':>10} {'peak extra MB':>14} {'x logits':>9} {'speed vs ours':>14}")
        for impl in IMPLS:
            entry = impls[impl]
            extra = entry["extra"]
            peak = extra.get("peak_extra_bytes")
            peak_mb = f"{peak / 2**20:.1f}" if isinstance(peak, (int, float)) else "?"
            ratio = extra.get("peak_extra_over_logits")
            ratio_s = f"{ratio:.2f}" if isinstance(ratio, (int, float)) else "?"
            print(f"{impl:<10} {entry['median'] * 1e3:>10.1f} {peak_mb:>14} {ratio_s:>9} "
                  f"{_ratio(entry['median'], ours['median']):>13.2f}x")
        ours_peak = ours["extra"].get("peak_extra_bytes")
        for impl in ("monai", "reference"):
            other_peak = impls[impl]["extra"].get("peak_extra_bytes")
            if isinstance(ours_peak, (int, float)) and ours_peak > 0 and isinstance(other_peak, (int, float)):
                print(f"memory {impl}/ours: {other_peak / ours_peak:.2f}x")
        speedup = _ratio(impls["monai"]["median"], ours["median"])
        print(f"speed monai/ours: {speedup:.2f}x, reference/ours: {_ratio(impls['reference']['median'], ours['median']):.2f}x")
        verdict = "met" if speedup >= TARGET_SPEEDUP else "not met"
        print(f"target >= {TARGET_SPEEDUP}x faster than the MONAI one-hot composition: {verdict} "
              "(wall clock on this machine; printed, not enforced)")


def main(argv: list[str]) -> int:
    """Exit status: 0 printed, 2 bad input."""
    if len(argv) != 2:
        print("usage: check_loss_ratio.py BENCHMARK.json", file=sys.stderr)
        return 2
    try:
        groups = load_groups(Path(argv[1]))
    except BadInput as exc:
        print(str(exc), file=sys.stderr)
        return 2
    report(groups)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
