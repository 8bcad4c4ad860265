"""Print convert's throughput against reading the same chunks once, from a pytest-benchmark JSON (not gated).

Usage: python tests/benchmarks/check_convert_ratio.py BENCH.json
Exits 2 (one line) when the file is missing or holds no convert benchmark; 0 otherwise: a shared CI
machine makes timing ratios noisy, so they are reported, never a reason to fail.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench_json import BadInput, read_benchmarks


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_convert_ratio.py BENCH.json", file=sys.stderr)
        return 2
    try:
        benches = read_benchmarks(Path(argv[1]))
    except BadInput as exc:
        print(f"check_convert_ratio: {exc}", file=sys.stderr)
        return 2
    by = {(b.get("extra_info") or {}).get("impl"): b for b in benches if b.get("group") == "convert vs floor"}
    if "cellcheck" not in by or "floor" not in by:
        print(f"check_convert_ratio: no convert benchmark in {argv[1]}", file=sys.stderr)
        return 2
    ours, floor = by["cellcheck"]["stats"]["median"], by["floor"]["stats"]["median"]
    info = by["cellcheck"]["extra_info"]
    rate = info["output_voxels"] / ours / 1e6
    print(f"convert vs reading the same chunks once: {ours:.2f} s vs {floor:.2f} s -> {floor / ours:.2f} of the floor "
          f"({info['crops']} crops of {info['size']}^3, {rate:.1f} Mvoxel/s written as image + label)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
