"""`audit(path)`: the library entry point behind `cellcheck audit`; detects a datalist or a zarr folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cellcheck.audit.coverage import plan_of
from cellcheck.audit.datalist import audit_datalist
from cellcheck.audit.options import AuditOptions
from cellcheck.audit.stores import audit_cellmap
from cellcheck.checks.coverage import Sampling, empty_classes, plan_findings, render, stale_counts
from cellcheck.errors import CellcheckError
from cellcheck.findings import Finding
from cellcheck.report import Report, select_findings
from cellcheck.stats import CaseStats, left_out, summarize


def detect_kind(path: Path) -> str:
    """"datalist" for a JSON file, "cellmap" for a folder holding zarr stores (or a store itself)."""
    try:
        exists = path.exists()
    except PermissionError:
        raise CellcheckError(f"{path}: permission denied; fix: make it and its folders readable") from None
    if not exists:
        raise CellcheckError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "datalist"
        raise CellcheckError(f"{path}: not a datalist (.json) nor a folder of zarr stores")
    return "cellmap"


@dataclass
class AuditRun:
    """Everything one audit read: findings (unfiltered), every case by id, per-case statistics."""

    source: Path
    findings: list[Finding]
    case_ids: list[str]
    case_stats: list[CaseStats]
    notes: list[str]
    resolution: tuple[float, ...] | None = None

    @property
    def cases(self) -> int:
        return len(self.case_ids)

    def left_out(self) -> dict[str, str]:
        """The cases the statistics leave out, and why (`cellcheck.stats.left_out`)."""
        return left_out(self.case_ids, self.case_stats, self.findings, self.resolution)

    def summary(self, classes) -> dict:
        """The statistics of the cases that could be used, naming those left out."""
        return summarize(self.case_stats, classes, self.cases, self.left_out())


def datalists_beside_stores(folder: Path) -> list[Path]:
    """Datalist JSON files directly in a folder of stores (a dataset folder often holds both)."""
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob("*.json")):
        with open(p, "rb") as f:
            if b'"training"' in f.read(1 << 16):
                out.append(p)
    return out


def run_audit(
    path: Path, *, dataroot: Path | None = None, datastats: Path | None = None, options: AuditOptions = AuditOptions()
) -> AuditRun:
    """Read and check a datalist JSON or a folder of CellMap zarr stores. Read-only."""
    path = Path(path)
    notes = []
    if detect_kind(path) == "datalist":
        findings, cases, stats = audit_datalist(path, dataroot, datastats, options)
    elif options.source is not None:
        raise CellcheckError(f"{path}: --source checks a converted datalist against its stores; pass the datalist JSON")
    else:
        findings, cases, stats = audit_cellmap(path, options)
        for dl in datalists_beside_stores(path):
            notes.append(f"{path} holds CellMap stores and a datalist ({dl.name}): audited the stores; "
                         f"audit the converted data with `cellcheck audit {dl}`")
    findings += empty_classes(stats, options.classes, path, stale_counts(findings))
    return AuditRun(path, findings, cases, stats, notes, options.resolution)


def audit(
    path: Path,
    *,
    dataroot: Path | None = None,
    datastats: Path | None = None,
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    strict: bool = False,
    options: AuditOptions = AuditOptions(),
    coverage: Sampling | None = None,
) -> Report:
    """Run every check on a datalist JSON or a folder of CellMap zarr stores and build the report.

    `coverage`: the trainer's sampling (ROI, patches per crop, foreground share): the report then holds the
    coverage plan at fold 0 (at `options.resolution` for stores) and its findings.
    """
    run = run_audit(path, dataroot=dataroot, datastats=datastats, options=options)
    findings, extra, tables = run.findings, {}, []
    if coverage is not None:
        training = None
        if options.resolution is not None and detect_kind(run.source) == "cellmap":
            from cellcheck.cellmap.trainset import plan_training_set

            training = plan_training_set(run.source, options.resolution, options.classes)
        plan = plan_of(run.source, run.findings, run.case_stats, options.classes, coverage, dataroot=dataroot,
                       training=training)
        findings = [f for f in findings if f.check != "class-empty"] + list(plan_findings(plan, run.source))
        extra, tables = {"coverage": plan.to_json()}, render(plan)
    return Report(
        source=str(run.source),
        cases=run.cases,
        findings=select_findings(findings, select, ignore),
        stats=run.summary(options.classes),
        strict=strict,
        notes=run.notes,
        extra=extra,
        tables=tables,
    )
