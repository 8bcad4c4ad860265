"""The RAM model against a measured DataLoader pipeline: workers 0, 2 and 4 at two crop sizes, and skewed crops.

Usage: python tests/benchmarks/check_ram_model.py [--json OUT.json] [--sizes 128,192] [--workers 0,2,4]
                                                  [--mix 64x40,192x2] [--mix-workers 0,2] [--repeats 3] [--cache DIR]

Writes crops with the fixture generator, measures the machine's process bases on 16^3 crops, then
runs `loader_pipeline.py` under `cellcheck profile` for every (size, workers) with prefetch 2 and
batch 2 (Auto3DSeg's template chain), and for cellcheck's trainer chain (two 64^3 patches per crop)
at the largest size, and prints predicted, measured (peak of PSS summed over the process tree plus the shared
memory of batches waiting in the DataLoader queue, highest of --repeats runs; each run's and the
PSS-only figure beside it) and their ratio. Then a skewed dataset (`--mix`: many small crops, a few
large ones), one shuffled epoch per run, a different order each run: the worst case must be at or
above every run's peak, the typical case (median simulated epoch peak) within 15 % of the runs' median.
Nothing else should run on the machine meanwhile: PSS splits shared-library pages with every other
process that maps them (another torch job included). About 8 minutes with 3 repeats.
Exits 0 when every ratio is within 15 % and no run exceeds its worst case, 1 when one does, 2 when
the measurement cannot run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import loader_memory as lm


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _mix(text: str) -> tuple[tuple[int, int], ...]:
    """'64x40,192x2' -> ((64, 40), (192, 2)): crop side x number of crops."""
    return tuple((int(side), int(n)) for side, n in (item.split("x") for item in text.split(",") if item.strip()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("--sizes", type=_ints, default=[128, 192])
    parser.add_argument("--workers", type=_ints, default=[0, 2, 4])
    parser.add_argument("--trainer-workers", dest="trainer_workers", type=_ints, default=[0, 2, 4],
                        help="worker counts for cellcheck's trainer chain at the largest size (none: --trainer-workers '')")
    parser.add_argument("--mix", type=_mix, default=((64, 40), (192, 2)),
                        help="skewed crops as SIDExCOUNT,... (none: --mix '')")
    parser.add_argument("--mix-workers", dest="mix_workers", type=_ints, default=[0, 2])
    parser.add_argument("--repeats", type=int, default=3, help="runs per config; the highest peak counts")
    parser.add_argument("--cache", type=Path, default=None, help="keep the generated crops here between runs")
    args = parser.parse_args(argv)
    configs = [lm.LoaderConfig(size, workers) for size in args.sizes for workers in args.workers]
    configs += [lm.LoaderConfig(max(args.sizes), workers, chain="trainer") for workers in args.trainer_workers]
    if args.mix:
        configs += [lm.LoaderConfig(0, workers, batch=1, mix=args.mix) for workers in args.mix_workers]
    try:
        rows, bases = lm.run(configs, args.cache, args.repeats)
    except (RuntimeError, OSError) as exc:
        print(f"check_ram_model: {exc}", file=sys.stderr)
        return 2
    print(lm.table(rows, bases))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"bases": {k: vars(b) for k, b in bases.items()}, "rows": rows}, indent=2) + "\n")
    outside = [r["config"] for r in rows if not lm.within(r["ratio"]) or r.get("worst_ratio", 1.0) < 1.0]
    if outside:
        print(f"outside {lm.TOLERANCE:.0%}: {'; '.join(outside)}", file=sys.stderr)
        return 1
    print(f"all {len(rows)} within {lm.TOLERANCE:.0%}, no run above its worst case")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
