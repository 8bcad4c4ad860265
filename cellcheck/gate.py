"""The pre-submission gate: audit + training config + environment + memory plan, one verdict.

`cellcheck gate`, the trainer (in process, before touching a GPU) and the sbatch templates
(as their first step) all call `run_gate`, so a job is refused for the same reasons
everywhere. Strict by default: a warning fails the gate too (use --ignore for the ids a
dataset is known to carry).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cellcheck.audit import run_audit
from cellcheck.audit.coverage import plan_of
from cellcheck.audit.options import AuditOptions
from cellcheck.cellmap.trainset import TrainingSet, describe, plan_training_set
from cellcheck.checks.coverage import Sampling, plan_findings, render
from cellcheck.checks.environment import alloc_conf
from cellcheck.checks.folds import store_coverage as coverage
from cellcheck.classes import DEFAULT_CLASS_MAP, ClassMap
from cellcheck.config import KEYS, LoadedConfig, load_config, loss_masking
from cellcheck.errors import CellcheckError
from cellcheck.findings import Finding, Severity, finding
from cellcheck.grid import format_scale
from cellcheck.memory.store_ram import StoreReads, reads_of
from cellcheck.probe import job_bytes, probe_findings, read_probe
from cellcheck.report import Report, select_findings
from cellcheck.stratify import natural_key
from cellcheck.stats import CaseStats


def _default(key: str) -> Any:
    return KEYS[key].default


@dataclass
class GatePlan:
    """What the job will run with: model, target GPU and host memory, loader settings (the config's defaults)."""

    model: str | None = None
    gpu: str = _default("gpu")
    gpus: int = _default("gpus")
    mem: str | None = None
    workers: int = _default("num_workers")
    prefetch: int = _default("prefetch_factor")
    roi: list[int] | None = None
    batch: int | None = None
    amp: bool = _default("amp")
    chain: str = "template"  # the loading chain the RAM model follows: Auto3DSeg's, or our trainer's
    num_patches: int = 1
    network_width: float = _default("network_width")


def plan_from(values: Mapping[str, Any] | None, **cli: Any) -> GatePlan:
    """A config's values (every valid key), overridden by the command line where it gives one."""
    base = GatePlan()
    if values:
        base = GatePlan(model=values.get("model"), gpu=values.get("gpu", base.gpu), gpus=values.get("gpus", base.gpus),
                        mem=values.get("mem"), workers=values.get("num_workers", base.workers),
                        prefetch=values.get("prefetch_factor", base.prefetch), roi=values.get("roi_size"),
                        batch=values.get("batch_size"), amp=values.get("amp", base.amp), chain="trainer",
                        num_patches=values.get("num_patches_per_image", 1),
                        network_width=values.get("network_width", base.network_width))
    for key, value in cli.items():
        if value is not None:
            setattr(base, key, value)
    return base


def run_gate(
    path: Path | None = None,
    *,
    config: Path | LoadedConfig | None = None,
    overrides: Mapping[str, Any] | None = None,
    plan: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    options: AuditOptions = AuditOptions(),
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    strict: bool = True,
    probe: Mapping[str, Any] | None = None,
) -> Report:
    """Every check before a job may start. Raises CellcheckError only when nothing can be checked.

    `config`: the training config file (read with `overrides`), or one already loaded. `probe`: a
    `cellcheck probe` report to judge the job's memory by; without one, the run folder's probe.json
    when it measured this config.
    """
    findings: list[Finding] = []
    loaded = config if isinstance(config, LoadedConfig) or config is None else load_config(Path(config), overrides)
    values: dict[str, Any] = {}
    if loaded is not None:
        findings += loaded.findings
        values = loaded.usable
    job = plan_from(values, **(plan or {}))
    data = Path(path) if path is not None else _datalist_of(loaded)
    classes: ClassMap = values.get("classes") or DEFAULT_CLASS_MAP
    options = replace(options, classes=classes)  # audit the labels the run will train
    stores = data.is_dir() and values.get("resolution") is not None
    if stores:  # audit the crops at the resolution the run trains at
        options = replace(options, resolution=values["resolution"])
    run = run_audit(data, dataroot=values.get("dataroot"), options=options)
    notes: list[str] = []
    reads, training = None, None
    if stores:
        training, training_findings, notes = store_training(data, values, run.findings, classes)
        findings += training_findings
        job.chain, reads = "store", reads_of(training)
    else:
        findings += run.findings
    coverage = None
    if job.roi:  # the plan at the run's split replaces the audit's split-free class-empty
        coverage = plan_of(data, run.findings, run.case_stats, classes,
                           Sampling(tuple(job.roi), job.num_patches, values.get("foreground_ratio", _default("foreground_ratio"))),
                           fold=values.get("fold", 0), dataroot=values.get("dataroot"), training=training)
        findings = [f for f in findings if f.check != "class-empty"] + list(plan_findings(coverage, data))
    if loaded is not None:
        findings += loss_masking(values.get("loss"), _partially_annotated(run.case_stats, len(classes)), loaded.source)
    findings += alloc_conf(os.environ if env is None else env)
    memory_plan = None
    if job.model:
        memory_plan, found = _memory_plan(job, run.case_stats, classes, reads)
        findings += found
    probed = None
    if loaded is not None and loaded.config is not None:
        probed, why = (probe, None) if probe is not None else read_probe(loaded.config.output_dir, loaded.config)
        notes += [why] if why else []
        if probed is not None:
            found, said = probe_findings(probed, ranks=job.gpus, mem=job.mem, where=data, gpu=job.gpu)
            findings += found
            notes += said
    report = Report(source=str(data), cases=run.cases, findings=select_findings(findings, select, ignore),
                    stats=run.summary(classes), strict=strict, notes=notes,
                    tables=render(coverage) if coverage is not None else [])
    config_json = loaded.config.to_json() if loaded is not None and loaded.config is not None else (
        {k: _jsonable(v) for k, v in values.items()} if loaded is not None else None)
    report.extra = {"gate": {"plan": asdict(job), "memory": memory_plan, "config": config_json,
                             "coverage": coverage.to_json() if coverage is not None else None,
                             "probe": _probe_summary(probed, job.gpus)}}
    return report


def store_training(root: Path, values: Mapping[str, Any], audited: Sequence[Finding],
                   classes: ClassMap) -> tuple[TrainingSet, list[Finding], list[str]]:
    """The audit's findings as the run will meet them, and what the run trains on (notes for the report).

    Crops the config leaves out (exclude_crops, or absent from the datasplit) do not train: their findings
    go. A crop that cannot train at the resolution is an error with the audit's reason and the config
    line that leaves it out; one note lists them all, ready to paste. With `resample: true` a crop read
    from another label level trains, and the audit's resolution-mismatch about it goes too.
    """
    training = plan_training_set(root, values["resolution"], classes, fold=values.get("fold", 0),
                                 datasplit=values.get("datasplit"), exclude=values.get("exclude_crops") or (),
                                 resample=bool(values.get("resample")))
    excluded = set(training.excluded)
    resampled = {c.case for c in training.cases if c.resampled}
    kept = [f for f in audited if f.case not in excluded
            and not (f.case in resampled and f.check == "resolution-mismatch")]
    refused_cases = set()
    for refusal in training.refused:
        refused_cases.add(refusal.case)
        first = next((f for f in kept if f.case == refusal.case and f.severity is Severity.ERROR), None)
        if first is None:
            first = replace(refusal)
            kept.append(first)
        first.message += "; to train without it add it to exclude_crops" + (
            ", or let its labels be resampled: resample: true" if refusal.case in training.resamplable else "")
    notes = [f"{root}: {describe(training)}"]
    if training.refused:
        names = ", ".join(sorted(refused_cases, key=natural_key))
        notes.append(f"the crops that cannot train at {format_scale(training.resolution)}: exclude_crops: [{names}]")
    kept += coverage(str(root), training, classes)
    return training, kept, notes


def _probe_summary(probed: Mapping[str, Any] | None, ranks: int) -> dict[str, Any] | None:
    """What the gate took from a probe: when, the job's measured memory, whether it stopped, the model's verdicts."""
    if probed is None:
        return None
    need, how = job_bytes(probed, ranks)
    model = probed.get("model") or {}
    return {"finished": probed.get("finished"), "job_bytes": need, "reckoned": how, "stopped": probed.get("stopped"),
            "verdicts": [r["verdict"] for r in model.get("ram", []) + model.get("vram", [])]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, ClassMap):
        return list(value.names)
    return str(value) if isinstance(value, Path) else value


def _datalist_of(loaded: LoadedConfig | None) -> Path:
    datalist = loaded.usable.get("datalist") if loaded is not None else None
    if not datalist:
        raise CellcheckError("nothing to gate: give a datalist (or zarr folder) PATH or a --config with 'datalist'")
    return datalist


def _drivers(ram: dict[str, Any]) -> str:
    """The crops that drive the worst case, for a message."""
    drivers = (ram.get("worst_case") or {}).get("drivers") or []
    return "driven by " + ", ".join(d["case"] for d in drivers[:3]) if drivers else "every crop alike"


def _partially_annotated(cases: Sequence[CaseStats], num_classes: int) -> bool:
    return any(c.channels is not None and len(c.channels) < num_classes for c in cases)


def _memory_plan(job: GatePlan, cases: Sequence[CaseStats], classes: ClassMap,
                 reads: StoreReads | None = None) -> tuple[dict[str, Any] | None, list[Finding]]:
    """Predicted VRAM and host RAM for the job; vram-exceeds / ram-exceeds when they do not fit."""
    from cellcheck.memory.predict import predict

    shapes = np.array([c.image_shape[:3] for c in cases if c.image_shape and len(c.image_shape) >= 3], dtype=float)
    if not len(shapes):
        return None, []
    spacings = [c.image_spacing[:3] for c in cases if c.image_spacing]
    stats = {"n_cases": len(cases), "mean_shape": shapes.mean(0).tolist(), "max_shape": shapes.max(0).tolist(),
             "spacing": list(np.mean(spacings, axis=0)) if spacings else [1.0, 1.0, 1.0],
             "crops": [{"case": c.case, "shape": list(c.image_shape[:3])} for c in cases
                       if c.image_shape and len(c.image_shape) >= 3]}
    result = predict(stats, job.model, gpu=job.gpu, gpus=job.gpus, workers=job.workers, prefetch=job.prefetch,
                     roi=job.roi, batch=job.batch, amp=job.amp, mem=job.mem, search_max_batch=False,
                     chain=job.chain, num_patches=job.num_patches, classes=classes, network_width=job.network_width,
                     store_reads=reads)
    out: list[Finding] = []
    vram, ram = result["vram"], result["ram"]
    gib = 2**30
    if not vram["fits"]:
        out.append(finding(
            "vram-exceeds", None, None,
            f"{job.model} at batch {vram['batch_size']}, ROI {vram['roi_size']} needs about {vram['peak_bytes'] / gib:.1f} GiB "
            f"per GPU; {result['gpu']['name']} has {result['gpu']['total_bytes'] / gib:.1f} GiB: lower batch_size or roi_size",
            peak_bytes=vram["peak_bytes"], total_bytes=result["gpu"]["total_bytes"]))
    if job.mem is not None and ram["mem_bytes"] < ram["peak_bytes"]:
        out.append(finding(
            "ram-exceeds", None, None,
            f"host memory needs about {ram['peak_bytes'] / gib:.0f} GiB when the largest crops are in flight together "
            f"({_drivers(ram)}), above --mem {job.mem}: ask for --mem={ram['slurm_mem']} or lower num_workers / "
            "prefetch_factor", peak_bytes=ram["peak_bytes"], slurm_mem=ram["slurm_mem"], mem=job.mem))
    elif ram.get("fits") is False:
        out.append(finding(
            "ram-headroom", None, None,
            f"--mem {job.mem} holds the worst case ({ram['peak_bytes'] / gib:.0f} GiB) with less than "
            f"{ram['config']['headroom_fraction']:.0%} to spare for what the model leaves out (allocator caches, "
            f"page cache): ask for --mem={ram['slurm_mem']}", peak_bytes=ram["peak_bytes"],
            slurm_mem=ram["slurm_mem"], mem=job.mem))
    for f in result.get("findings", []):
        out.append(Finding(f["check"], Severity(f["severity"]), f["case"], f["path"], f["message"], f["details"]))
    return result, out
