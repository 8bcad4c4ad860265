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
from cellcheck.audit.options import AuditOptions
from cellcheck.checks.environment import alloc_conf
from cellcheck.classes import NUM_CLASSES
from cellcheck.config import class_map_of, loss_masking, read_config, validate_config
from cellcheck.errors import CellcheckError
from cellcheck.findings import Finding, Severity, finding
from cellcheck.report import Report, select_findings
from cellcheck.stats import CaseStats, summarize


@dataclass
class GatePlan:
    """What the job will run with: model, target GPU and host memory, loader settings."""

    model: str | None = None
    gpu: str = "l40s"
    gpus: int = 1
    mem: str | None = None
    workers: int = 4
    prefetch: int = 2
    roi: list[int] | None = None
    batch: int | None = None
    amp: bool = True
    chain: str = "template"  # the loading chain the RAM model follows: Auto3DSeg's, or our trainer's
    num_patches: int = 1


def plan_from(cfg: Mapping[str, Any] | None, **cli: Any) -> GatePlan:
    """Config values, overridden by the command line where it gives one."""
    base = GatePlan()
    if cfg:
        base = GatePlan(model=cfg.get("model"), gpu=cfg.get("gpu", base.gpu), gpus=cfg.get("gpus", base.gpus),
                        mem=cfg.get("mem"), workers=cfg.get("num_workers", base.workers),
                        prefetch=cfg.get("prefetch_factor", base.prefetch), roi=cfg.get("roi_size"),
                        batch=cfg.get("batch_size"), amp=cfg.get("amp", True), chain="trainer",
                        num_patches=cfg.get("num_patches_per_image", 1))
    for key, value in cli.items():
        if value is not None:
            setattr(base, key, value)
    return base


def run_gate(
    path: Path | None = None,
    *,
    config: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    plan: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    options: AuditOptions = AuditOptions(),
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    strict: bool = True,
) -> Report:
    """Every check before a job may start. Raises CellcheckError only when nothing can be checked."""
    findings: list[Finding] = []
    cfg: dict[str, Any] | None = None
    if config is not None:
        raw = {**read_config(config), **(overrides or {})}
        cfg, found = validate_config(raw, source=str(config))
        findings += found
    job = plan_from(cfg, **(plan or {}))
    data = Path(path) if path is not None else _datalist_of(cfg, config)
    dataroot = _path_in(cfg.get("dataroot"), config) if cfg and cfg.get("dataroot") else None
    if cfg and cfg.get("classes") and not any(f.details.get("key") == "classes" for f in findings):
        options = replace(options, classes=class_map_of(cfg, config))  # audit the labels the run will train
    run = run_audit(data, dataroot=dataroot, options=options)
    findings += run.findings
    num_classes = cfg.get("num_classes", NUM_CLASSES) if cfg else NUM_CLASSES
    if cfg is not None:
        findings += loss_masking(cfg, _partially_annotated(run.case_stats, num_classes), str(config))
    findings += alloc_conf(os.environ if env is None else env)
    memory_plan = None
    if job.model:
        memory_plan, found = _memory_plan(job, run.case_stats)
        findings += found
    report = Report(source=str(data), cases=run.cases, findings=select_findings(findings, select, ignore),
                    stats=summarize(run.case_stats, n_cases=run.cases), strict=strict)
    report.extra = {"gate": {"plan": asdict(job), "memory": memory_plan, "config": cfg}}
    return report


def _drivers(ram: dict[str, Any]) -> str:
    """The crops that drive the worst case, for a message."""
    drivers = (ram.get("worst_case") or {}).get("drivers") or []
    return "driven by " + ", ".join(d["case"] for d in drivers[:3]) if drivers else "every crop alike"


def _datalist_of(cfg: Mapping[str, Any] | None, config: Path | None) -> Path:
    if not cfg or not cfg.get("datalist"):
        raise CellcheckError("nothing to gate: give a datalist (or zarr folder) PATH or a --config with 'datalist'")
    return _path_in(cfg["datalist"], config)


def _path_in(value: str, config: Path | None) -> Path:
    """A path from the config, relative to the config file's folder."""
    p = Path(value)
    return p if p.is_absolute() or config is None else config.parent / p


def _partially_annotated(cases: Sequence[CaseStats], num_classes: int) -> bool:
    return any(c.channels is not None and len(c.channels) < num_classes for c in cases)


def _memory_plan(job: GatePlan, cases: Sequence[CaseStats]) -> tuple[dict[str, Any] | None, list[Finding]]:
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
                     chain=job.chain, num_patches=job.num_patches)
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
