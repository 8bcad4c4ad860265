"""The text forms of a memory plan and of a profile's summary (`cellcheck predict`, `cellcheck profile`)."""

from __future__ import annotations

from pathlib import Path

from cellcheck.memory.gpus import GiB
from cellcheck.words import counted


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:.2f} GiB"


def _left_out(dataset: dict) -> str:
    n = dataset.get("skipped_unreadable", 0)
    return f" (+{n} unreadable, left out)" if n else ""


def render_text(result: dict) -> str:
    """A short human table of a prediction: the plan the checks apply to first, then Auto3DSeg's, GPU, host RAM."""
    a, v, r, g = result["auto_scale"], result["vram"], result["ram"], result["gpu"]
    plan = result.get("plan")
    auto_roi = "x".join(map(str, a["roi_size"]))
    if plan and plan["roi_from"] == "auto3dseg, rounded up":
        auto_roi += f" (which {result['model']} cannot train: the plan rounds it up)"
    lines = [
        f"cellcheck predict: {result['model']} on {g['name']} ({_gib(g['total_bytes'])}), "
        f"{counted(result['dataset']['n_cases'], 'case')}{_left_out(result['dataset'])}, mean shape "
        + "x".join(f"{s:.0f}" for s in result["dataset"]["mean_shape"]),
        "",
        *(render_plan(result) + [""] if plan else []),
        "Auto3DSeg would choose",
        f"  batch (patches/step) {a['batch_size']:>8}    epochs {a['num_epochs']}    ROI {auto_roi}",
        "",
        f"GPU memory per card (one step, batch {v['batch_size']}, ROI {'x'.join(map(str, v['roi_size']))}, "
        f"AMP {v['amp'] or 'off'}; model not yet calibrated on a GPU)",
    ]
    for key, value in v["breakdown"].items():
        lines.append(f"  {key:<22} {_gib(value):>12}")
    verdict = "fits" if v["fits"] else "DOES NOT FIT"
    lines.append(f"  {'peak':<22} {_gib(v['peak_bytes']):>12}   {verdict} in {_gib(g['total_bytes'])}")
    if v.get("max_batch_size") is not None:
        lines.append(f"  largest batch that fits: {v['max_batch_size']}")
    lines += ["", *render_ram(r, plan)]
    for f in result.get("findings", []):
        lines.append(f"{f['severity']}: {f['check']}: {f['message']}")
    return "\n".join(lines) + "\n"


def render_plan(result: dict) -> list[str]:
    """Which ROI, batch and epochs apply, why, and which constraint binds (`predict.plan_summary`)."""
    p, v, r, g = result["plan"], result["vram"], result["ram"], result["gpu"]
    roi = "x".join(map(str, p["roi_size"]))
    total = _gib(g["total_bytes"])
    lines = [f"Plan checked below: ROI {roi}, batch {p['batch_size']} patches per GPU step, "
             f"{counted(p['num_epochs'], 'epoch')}; "
             + (f"{' and '.join(p['binding'])} bind{'s' if len(p['binding']) == 1 else ''}" if p["binding"]
                else "it fits: neither GPU memory nor --mem binds" if r.get("fits") is not None
                else "it fits the GPU, and host RAM sets --mem"),
             f"  ROI: {p['roi_why']}"]
    origin = "as given (--batch)" if p["batch_from"] == "--batch" else f"Auto3DSeg's rule for {g['name']} ({total})"
    if p["gpu_fits"]:
        held = f"the GPU holds it (peak {_gib(v['peak_bytes'])} of {total})"
    else:
        held = f"the GPU cannot hold it (peak {_gib(v['peak_bytes'])} of {total}): GPU memory binds"
    most = p.get("max_batch_size")
    largest = f"; the largest batch that fits is {most}" if most is not None else (
        "" if p["gpu_fits"] else "; lower --batch or --roi")
    lines.append(f"  batch: {origin}; {held}{largest}")
    crops = p.get("loader_crops_per_batch")
    if crops:
        per = p.get("patches_per_crop")
        lines.append(f"  a DataLoader batch is {counted(crops, 'crop')}"
                     + (f", each cut into {counted(per, 'patch', 'patches')} of the ROI: the GPU step takes "
                        f"{p['batch_size']} of them" if per else ", whole (this chain loads whole crops)"))
    if p["mem_set_by"] == "processes":
        why = (f"set by the processes themselves ({_gib(p['processes_bytes'])} for the ranks and workers); "
               f"the crops in flight add {_gib(p['crops_bytes']) if p['crops_bytes'] >= GiB / 100 else 'under 0.01 GiB'}")
    else:
        why = (f"set by the crops in flight ({_gib(p['crops_bytes'])}; the ranks and workers themselves "
               f"{_gib(p['processes_bytes'])})")
    binds = f": host RAM binds, above --mem {_gib(r['mem_bytes'])}" if r.get("fits") is False else ""
    lines.append(f"  host RAM: --mem={p['mem']}, {why}{binds}")
    return lines


def _more(slots: int) -> str:
    return f" and {slots - 1} more slot{'s' if slots > 2 else ''}" if slots > 1 else ""


#: A crop that holds less than this share of the worst case does not "drive" it.
DRIVER_MIN_SHARE = 0.01


def render_ram(r: dict, plan: dict | None = None) -> list[str]:
    """The host-RAM part of a prediction: worst case, typical epoch, what drives it, what was left out."""
    c, w, t = r["config"], r.get("worst_case") or {}, r.get("typical") or {}
    chain = f"{c['chain']} chain" + (f", label expansion {c['expansion']}" if c.get("expansion") else "") + (
        ", sigmoid crop label" if c.get("sigmoid") else "")
    lines = [f"Host RAM ({counted(c['gpus'], 'rank')} x {counted(c['workers'], 'worker')} x prefetch {c['prefetch']} "
             f"x {counted(c['batch'], 'crop')} per loader batch, "
             f"one-hot {c.get('one_hot_channels') or 'off'}, {chain})",
             f"  per crop voxel: held {c['held_bytes_per_voxel']:g} B until collate, "
             f"{c['peak_bytes_per_voxel']:g} B at the chain's peak",
             f"  per rank {_gib(r['per_rank_bytes']):>12}   per worker {_gib(r['per_worker_bytes'])}",
             f"  worst case {_gib(r['peak_bytes']):>10}   with headroom {_gib(r['required_bytes'])}   "
             f"--mem={r['slurm_mem']}"
             + (f"   ({w['slots']} crop slots in flight, the {w['distinct_crops']} largest crops in them)"
                if w.get("slots") else "")]
    if t.get("epochs_simulated"):
        lines.append(f"  typical epoch peak {_gib(t['peak_bytes'])} (median of {t['epochs_simulated']} simulated "
                     f"epochs; 90 % below {_gib(t['epoch_peak_p90_bytes'])}); "
                     f"median step {_gib(t['median_step_bytes'])}")
    if r.get("fits") is not None:
        chance = t.get("p_epoch_exceeds_mem")
        odds = "" if chance is None else f"; chance an epoch crosses it: {100 * chance:.1f} %"
        lines.append(f"  {'fits' if r['fits'] else 'DOES NOT FIT'} in --mem {_gib(r['mem_bytes'])}{odds}")
    drivers = [d for d in w.get("drivers") or [] if d["bytes"] >= DRIVER_MIN_SHARE * r["peak_bytes"]]
    if plan is not None and plan.get("mem_set_by") == "processes":
        drivers = []  # the plan says it: the processes set --mem, no crop drives it
    if drivers and len({d["case"] for d in w.get("drivers") or []}) > 1:
        lines.append("  driven by: " + ", ".join(
            f"{d['case']} ({d['voxels'] / 1e6:.1f}M voxels, {d['slot']}{_more(d['slots'])}: {_gib(d['bytes'])})"
            for d in drivers[:3]))
    crops = r.get("crops") or {}
    if crops.get("left_out"):
        names = ", ".join(crops["left_out_cases"][:5]) + (" ..." if crops["left_out"] > 5 else "")
        lines.append(f"  LEFT OUT: {crops['left_out']} crops whose size could not be read ({names}); the plan "
                     "does not include them")
    return lines


def render_profile_summary(summary: dict, path: Path) -> str:
    """Peaks of a profile, a few lines for a terminal."""
    lines = [f"cellcheck profile: {counted(summary['samples'], 'sample')} in {path}"]
    peak, top = summary.get("peak"), summary.get("peak_process")
    if peak:
        roles = ", ".join(f"{role} {_gib(v)}" for role, v in peak["roles"].items() if v)
        lines.append(f"  peak PSS of the process tree {_gib(peak['pss_bytes'])} at {peak['elapsed_s']:.1f} s "
                     f"({counted(peak['processes'], 'process')}: {roles}); RSS sum then {_gib(peak['rss_bytes'])}")
    foot = summary.get("peak_footprint")
    if foot and foot["unmapped_shm_bytes"]:
        lines.append(f"  peak PSS + batches waiting in shared memory {_gib(foot['footprint_bytes'])} at "
                     f"{foot['elapsed_s']:.1f} s ({_gib(foot['unmapped_shm_bytes'])} mapped by no process)")
    if top:
        lines.append(f"  largest process: pid {top['pid']} ({top['role']}, {top['name']}) PSS {_gib(top['pss_bytes'])}, "
                     f"USS {_gib(top['uss_bytes'])}")
    if summary.get("min_available_bytes") is not None:
        lines.append(f"  host memory available, lowest: {_gib(summary['min_available_bytes'])}")
    if summary.get("gpus"):
        for index, g in summary["gpus"].items():
            util = "" if g["peak_utilization_pct"] is None else f", utilization up to {g['peak_utilization_pct']} %"
            lines.append(f"  GPU {index} ({g['name']}): used up to {_gib(g['peak_used_bytes'])} of "
                         f"{_gib(g['total_bytes'])}{util}")
    elif summary.get("gpu_note"):
        lines.append(f"  no GPU sampled: {summary['gpu_note']}; host memory only")
    return "\n".join(lines) + "\n"
