"""Ratios of the audit benchmark, from one pytest-benchmark JSON run; gate on bounded memory.

Usage: python tests/benchmarks/check_audit_ratios.py BENCH.json

Prints: speed-up over MONAI DataAnalyzer (target >= 10x), throughput relative to only
decompressing every voxel (target >= 0.70; the joint pass on large crops >= 0.80), the time per
case on many small crops and how much of it is over decompressing them, and peak RSS at two crop
sizes (target: the same within 20 %, under 512 MiB). Exits 1 when memory is not bounded (peak ratio > 1.2 or
a peak over 512 MiB), or when cellcheck is slower than DataAnalyzer at all; speed targets
are reported, not gated, because a shared 2-core CI machine makes their exact value noisy.
Exits 2 (one line) when the file is missing or holds no audit benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench_json import BadInput, read_benchmarks

TARGET_SPEEDUP, TARGET_FLOOR, TARGET_LARGE, MAX_RSS_RATIO, MAX_RSS = 10.0, 0.70, 0.80, 1.20, 512 * 2**20


def medians(group: dict[str, list[dict]], ours: str = "cellcheck", theirs: str = "floor") -> tuple[float, float] | None:
    """The median seconds of two implementations in one benchmark group, or None when either is missing."""
    if ours not in group or theirs not in group:
        return None
    return group[ours][0]["stats"]["median"], group[theirs][0]["stats"]["median"]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_audit_ratios.py BENCH.json", file=sys.stderr)
        return 2
    try:
        benches = read_benchmarks(Path(argv[1]))
    except BadInput as exc:
        print(f"check_audit_ratios: {exc}", file=sys.stderr)
        return 2
    groups: dict[str, dict[str, list[dict]]] = {}
    for b in benches:
        impl = (b.get("extra_info") or {}).get("impl")
        if impl:
            groups.setdefault(b.get("group") or "", {}).setdefault(impl, []).append(b)
    ok, rows = True, []
    da = groups.get("audit vs DataAnalyzer", {})
    if (pair := medians(da, theirs="monai-dataanalyzer")) is not None:
        ours, theirs = pair
        ratio = theirs / ours
        ok &= ratio > 1.0
        rows.append(f"audit+stats vs DataAnalyzer: {ours:.2f} s vs {theirs:.2f} s -> {ratio:.1f}x "
                    f"(target >= {TARGET_SPEEDUP:.0f}x: {'met' if ratio >= TARGET_SPEEDUP else 'NOT met'})")
    for fmt in ("nii", "zarr"):
        if (pair := medians(groups.get(f"audit vs floor ({fmt})", {}))) is not None:
            ours, floor = pair
            ratio = floor / ours
            rows.append(f"throughput vs read-only floor ({fmt}): {ours:.2f} s vs {floor:.2f} s -> {ratio:.2f} "
                        f"(target >= {TARGET_FLOOR:.2f}: {'met' if ratio >= TARGET_FLOOR else 'NOT met'})")
    g = groups.get("joint pass vs floor (large)", {})
    if (pair := medians(g)) is not None:
        ours, floor = pair
        info = g["cellcheck"][0]["extra_info"]
        ratio = floor / ours
        rows.append(f"joint pass vs read-only floor, {info['crops']} crops of {info['size']}^3 (nii.gz): {ours:.2f} s vs "
                    f"{floor:.2f} s -> {ratio:.2f} (target >= {TARGET_LARGE:.2f}: {'met' if ratio >= TARGET_LARGE else 'NOT met'})")
    g = groups.get("per case (small, 2 jobs)", {})
    if (pair := medians(g)) is not None:
        ours, floor = pair
        n = g["cellcheck"][0]["extra_info"]["crops"]
        rows.append(f"per case, {n} crops of ~30^3 with 2 jobs: {1000 * ours / n:.2f} ms per case, {1000 * (ours - floor) / n:.2f} ms "
                    "of it over decompressing the case in one process")
    rss = sorted(((b["extra_info"]["voxels"], b["extra_info"]["peak_rss_bytes"]) for b in groups.get("peak RSS", {}).get("cellcheck", [])))
    if len(rss) >= 2:
        (v0, p0), (v1, p1) = rss[0], rss[-1]
        ratio = p1 / p0
        good = ratio <= MAX_RSS_RATIO and p1 <= MAX_RSS
        ok &= good
        rows.append(f"peak RSS: {p0 / 2**20:.0f} MiB at {round(v0 ** (1 / 3))}^3, {p1 / 2**20:.0f} MiB at {round(v1 ** (1 / 3))}^3 "
                    f"-> {ratio:.2f}x for {v1 / v0:.0f}x the voxels (bound <= {MAX_RSS_RATIO}, < 512 MiB: {'met' if good else 'NOT met'})")
    if not rows:
        print(f"check_audit_ratios: no audit benchmarks in {argv[1]}", file=sys.stderr)
        return 2
    print("\n".join(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
