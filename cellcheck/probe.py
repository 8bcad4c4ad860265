"""`cellcheck probe`: the run's real loader (and GPU, when there is one) measured before submission, beside the models.

The measured side runs in a child process (`python -m trainer.probe`: the trainer's own data path,
validation read and step, phase by phase); this side samples the child's whole process tree from
outside (PSS summed over the child and its DataLoader workers, plus shared memory of batches no
process maps yet: `cellcheck.memory.profiler`) and stops it before it would exceed the memory the host
has available (a login node cannot absorb a 200 GB probe), saying what it reached.

Each phase's peak is then set beside the RAM model (`cellcheck predict`'s), calibrated with the two
constants the probe measured on this machine, an idle rank and an idle worker:

- the loader over its epoch (the trainer's own order) against the model's typical epoch, no validation held;
- the highest peak of every phase (the largest crops in flight, the largest validation crop) against
  the model's worst case, which must never be below it: a model below a measurement is a bug to report;
- with CUDA, the step's peak allocated memory against the VRAM model.

Per rank, then times the config's ranks. The report (probe.json in the run folder, never a run mark)
carries a fingerprint of the config it measured: the gate uses it only for that config.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import psutil

from cellcheck.config import LoadedConfig, TrainConfig, load_config
from cellcheck.errors import CellcheckError
from cellcheck.files import write_atomic
from cellcheck.forecast import Schedule, Timings, forecast, human
from cellcheck.memory.gpus import GiB
from cellcheck.memory.profiler import MemoryProfiler

PROBE_FILE = "probe.json"
#: A probe stops itself when its tree would take more than this share of what the host had available.
AVAILABLE_SHARE = 0.8
#: Memory still growing at the loader's end: the last quarter's peak above the first half's by this much.
GROWTH_FRACTION, GROWTH_BYTES = 0.05, 64 * 2**20
#: The phases in the order the child runs them.
PHASES = ("base", "workers", "epoch", "worst", "validation", "scoring", "step")
#: Phases whose time the forecast uses, sampled as seldom as the trainer's own profiler samples a run: at
#: 0.1 s, reading smaps of every process of the tree took a quarter of the steps' time on a 2-core host.
TIMED_PHASES, TIMED_INTERVAL_S = frozenset({"scoring", "step"}), 1.0
#: Phases that run the network: on a CPU probe their tensors are host memory a GPU job keeps on its GPU.
NETWORK_PHASES = ("scoring", "step")


@dataclass(frozen=True)
class ProbeOptions:
    """Bounds of each loader phase, the training steps timed, the sampling interval, the memory ceiling."""

    batches: int = 50
    seconds: float = 60.0
    steps: int = 20
    interval_s: float = 0.1  # in the memory phases; the timed ones are sampled every TIMED_INTERVAL_S
    limit_bytes: int | None = None  # default: AVAILABLE_SHARE of the host's available memory at the start


#: Config keys that change nothing a probe measures (the schedule is forecast again from its timings).
UNMEASURED_KEYS = frozenset({"mem", "gpu", "gpus", "num_epochs", "num_epochs_per_validation", "early_stopping_patience",
                             "smoke_test", "tensorboard", "ddp_timeout_s", "max_nan_steps", "output_dir"})


def fingerprint(cfg: TrainConfig) -> str:
    """What a probe measured holds for configs that agree on every key that shapes the data, the network and the step."""
    measured = {k: v for k, v in cfg.to_json().items() if k not in UNMEASURED_KEYS}
    return hashlib.sha256(json.dumps(measured, sort_keys=True, default=str).encode()).hexdigest()[:16]


def loaded_or_fail(config: Path, overrides: Mapping[str, Any] | None) -> LoadedConfig:
    loaded = load_config(Path(config), overrides)
    if loaded.config is None:
        first = next((f for f in loaded.findings if f.severity.value == "error"), None)
        raise CellcheckError(f"{loaded.source}: {first.message if first else 'not a usable training config'}; "
                             "run cellcheck gate for every problem")
    return loaded


def run_probe(config: Path, overrides: Mapping[str, Any] | None = None,
              options: ProbeOptions = ProbeOptions()) -> dict[str, Any]:
    """Probe the run `config` describes; the report (see the module docstring). Raises CellcheckError when the
    config or its data cannot be read (the child's one line)."""
    loaded = loaded_or_fail(config, overrides)
    cfg = loaded.config
    available = int(psutil.virtual_memory().available)
    limit = options.limit_bytes or int(AVAILABLE_SHARE * available)
    with tempfile.TemporaryDirectory(prefix="cellcheck-probe-") as tmp:
        report_path, events_path, err_path = Path(tmp, "report.json"), Path(tmp, "events.jsonl"), Path(tmp, "stderr")
        cmd = [sys.executable, "-m", "trainer.probe", "--config", str(config), "--report", str(report_path),
               "--events", str(events_path), "--batches", str(options.batches), "--seconds", str(options.seconds),
               "--steps", str(options.steps)]
        for key, value in (overrides or {}).items():
            cmd += ["--set", f"{key}={json.dumps(value, default=str)}"]
        started = time.time()
        with open(err_path, "w", encoding="utf-8") as err:
            child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        stopped, phase = None, None
        with MemoryProfiler(None, interval_s=options.interval_s, pid=child.pid) as prof:
            while child.poll() is None:
                time.sleep(options.interval_s)
                now = _current_phase(events_path)
                if now != phase:  # a sample as each phase starts, then the phase's own pace
                    phase, prof.interval_s = now, TIMED_INTERVAL_S if now in TIMED_PHASES else options.interval_s
                    prof.sample()
                last = prof.records[-1] if prof.records else None
                if last is not None and last["total"]["footprint_bytes"] > limit:
                    stopped = {"at_bytes": last["total"]["footprint_bytes"], "limit_bytes": limit,
                               "elapsed_s": round(time.time() - started, 1)}
                    _stop_tree(child)
                    break
        child.wait()
        events = _read_events(events_path)
        if stopped is None and child.returncode != 0:
            lines = Path(err_path).read_text(encoding="utf-8", errors="replace").strip().splitlines()
            reason = lines[-1] if lines else f"exit status {child.returncode}"
            raise CellcheckError(f"{config}: the probe's run could not start: {reason.removeprefix('cellcheck: ')}")
        measured = json.loads(report_path.read_text()) if report_path.is_file() else {}
    phases = phase_peaks(prof.records, events)
    out: dict[str, Any] = {"version": 1, "config": str(config), "fingerprint": fingerprint(cfg),
                           "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.time() - started, 1),
                           "ranks": cfg.gpus, "phases": phases, "measured": measured, "stopped": stopped,
                           "host": {"available_bytes_at_start": available, "limit_bytes": limit}}
    if measured:
        out["model"] = compare(cfg, measured, phases)
        out["forecast"] = forecast_of(cfg, measured).to_json()
        # the config targets a GPU (cfg.gpu); measured without one, the job's step time is the loader's floor only
        on_gpu = measured.get("device", "cpu").startswith("cuda")
        out["forecast_for_gpu_job"] = None if on_gpu else forecast_of(cfg, measured, for_gpu_job=True).to_json()
    return out


def _stop_tree(child: subprocess.Popen) -> None:
    """SIGKILL the child's session (it and its workers): it is past the memory it may use."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _current_phase(path: Path) -> str | None:
    """The phase the child is in now (None between phases)."""
    try:
        lines = path.read_text().split("\n")[:-1]  # whole lines: the child may be writing the next one
    except OSError:
        return None
    last = json.loads(lines[-1]) if lines and lines[-1].strip() else None
    return last["phase"] if last and last["edge"] == "start" else None


def _read_events(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def phase_peaks(records: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per phase: its peak footprint, its last sample and, for the loader, whether memory still grew at its end."""
    spans: dict[str, list[float]] = {}
    for e in events:
        spans.setdefault(e["phase"], [e["t"], float("inf")])
        if e["edge"] == "end":
            spans[e["phase"]][1] = e["t"]
    out: dict[str, Any] = {}
    for name in PHASES:
        if name not in spans:
            continue
        lo, hi = spans[name]
        inside = [r for r in records if lo <= r["t"] <= hi and r["processes"]]
        if not inside:
            continue
        foot = np.array([r["total"]["footprint_bytes"] for r in inside], dtype=float)
        row = {"peak_bytes": int(foot.max()), "median_bytes": int(np.median(foot)),
               "end_bytes": int(np.median(foot[-3:])), "samples": len(inside), "start_t": lo,
               "end_t": hi if hi != float("inf") else inside[-1]["t"],
               "seconds": round(min(hi, inside[-1]["t"]) - lo, 2), "processes": max(len(r["processes"]) for r in inside)}
        used = [g["used_bytes"] for r in inside for g in (r.get("gpus") or [])]
        if used:  # pynvml's view (context, cache and all), the busiest GPU of the node
            row["gpu_used_bytes"] = max(used)
        if name in ("epoch", "worst") and len(foot) >= 8:
            half, last = foot[: len(foot) // 2].max(), foot[-max(2, len(foot) // 4):].max()
            row["growing_at_end"] = bool(last > half * (1 + GROWTH_FRACTION) and last - half > GROWTH_BYTES)
        out[name] = row
    return out


def calibration(phases: Mapping[str, Any], workers: int) -> tuple[int | None, int | None]:
    """An idle rank's footprint and an idle worker's, as this machine measured them at the end of their phases
    (everything built, nothing loading); None where a phase is missing."""
    base = phases.get("base", {}).get("end_bytes")
    if base is None:
        return None, None
    if not workers or "workers" not in phases:
        return base, 0 if not workers else None
    return base, max(0, (phases["workers"]["end_bytes"] - base) // workers)


def _stats(measured: Mapping[str, Any]) -> dict[str, Any]:
    """The crops as `cellcheck.memory.predict` reads them: training crops (fold 1) and validation crops (fold 0)."""
    data = measured["data"]
    crops = [{"case": c["case"], "shape": c["shape"], "fold": 1} for c in data["train"]]
    crops += [{"case": c["case"], "shape": c["shape"], "fold": 0} for c in data["validation"]]
    shapes = np.array([c["shape"] for c in crops], dtype=float)
    return {"n_cases": len(crops), "mean_shape": shapes.mean(0).tolist(), "max_shape": shapes.max(0).tolist(),
            "spacing": [1.0, 1.0, 1.0], "crops": crops}


def compare(cfg: TrainConfig, measured: Mapping[str, Any], phases: Mapping[str, Any]) -> dict[str, Any]:
    """Each measurement beside the model's prediction, with the ratio (measured / predicted) and a verdict."""
    from cellcheck.memory.predict import predict

    rank_base, worker_base = calibration(phases, cfg.num_workers)
    reads = None
    chain = "trainer"
    if measured["data"]["kind"] == "stores":
        from cellcheck.cellmap.trainset import TrainingSet
        from cellcheck.memory.store_ram import reads_of

        chain, reads = "store", reads_of(TrainingSet.from_json(measured["data"]["training_set"]))
    common = dict(gpu=cfg.gpu, gpus=1, workers=cfg.num_workers, prefetch=cfg.prefetch_factor, roi=cfg.roi_size,
                  batch=cfg.batch_size, amp=cfg.amp, search_max_batch=False, chain=chain,
                  num_patches=cfg.num_patches_per_image, classes=cfg.classes, network_width=cfg.network_width,
                  store_reads=reads, fold=0)
    calibrated = dict(rank_base=rank_base, worker_base=worker_base) if rank_base is not None else {}
    loop = predict(_stats(measured), cfg.model, hold_validation=False, **common, **calibrated)["ram"]
    whole = predict(_stats(measured), cfg.model, **common, **calibrated)
    ram = whole["ram"]
    on_gpu = str(measured.get("device", "cpu")).startswith("cuda")
    host = {k: p for k, p in phases.items() if on_gpu or k not in NETWORK_PHASES}
    peak_all = max((p["peak_bytes"] for p in host.values()), default=None)
    rows = []
    if "epoch" in phases:
        rows.append(_row("loader, one epoch in the trainer's order", phases["epoch"]["peak_bytes"],
                         loop["typical"]["peak_bytes"], "typical epoch (no validation held)", bound=False))
    if peak_all is not None:
        what = "highest of every phase" if on_gpu else "highest of the host-side phases (the network ran on the CPU)"
        rows.append(_row(what, peak_all, ram["worst_case"]["peak_bytes"], "worst case", bound=True))
    out = {"calibration": {"rank_base_bytes": rank_base, "worker_base_bytes": worker_base},
           "ram": rows, "ram_worst_case": ram["worst_case"], "ram_typical": loop["typical"],
           "per_rank_measured_bytes": peak_all,
           "job_measured_bytes": None if peak_all is None else peak_all * cfg.gpus}
    cuda = (measured.get("step") or {}).get("cuda")
    if cuda:
        out["vram"] = [_row("step, peak allocated", cuda["max_allocated_bytes"], whole["vram"]["tracked"]["peak_bytes"],
                            "VRAM model's tensor peak", bound=True)]
        out["gpu_total_bytes"] = cuda["total_bytes"]
    return out


def _row(what: str, measured: int, predicted: int, model: str, *, bound: bool) -> dict[str, Any]:
    """One comparison; `bound`: the model must be at or above the measurement (a worst case)."""
    ratio = measured / predicted if predicted else None
    verdict = "model below measurement: the model is wrong (please report it)" if bound and measured > predicted \
        else "ok"
    return {"what": what, "measured_bytes": int(measured), "predicted_bytes": int(predicted), "model": model,
            "ratio": None if ratio is None else round(ratio, 3), "bound": bound, "verdict": verdict}


def forecast_of(cfg: TrainConfig, measured: Mapping[str, Any], *, for_gpu_job: bool = False):
    data, epoch, step = measured["data"], measured["epoch"], measured["step"]
    val = measured.get("validation") or {}
    schedule = Schedule(len(data["train"]), data["crops_per_batch"], cfg.batch_size, cfg.num_patches_per_image,
                        cfg.num_epochs, cfg.num_epochs_per_validation, sum(c["windows"] for c in data["validation"]),
                        cfg.gpus, cfg.max_steps_per_epoch, cfg.num_workers)
    fed = step.get("s_per_step_fed") or step.get("s_per_step_network") or 0.0
    timings = Timings(float(measured.get("open_s", 0.0)) + float(step.get("warmup_s") or 0.0),
                      float(epoch.get("s_per_batch") or 0.0), float(fed), float(step.get("s_per_step_network") or fed),
                      float(val.get("seconds", 0.0)), int(val.get("windows", 1)), float(val.get("warmup_s", 0.0)),
                      measured.get("device", "cpu").startswith("cuda"))
    return forecast(schedule, timings, for_gpu_job=for_gpu_job)


def save_probe(result: Mapping[str, Any], folder: Path) -> tuple[Path, Path | None]:
    """Write probe.json into the run folder; a previous probe is kept beside it under its finishing time."""
    folder.mkdir(parents=True, exist_ok=True)
    target, kept = folder / PROBE_FILE, None
    if target.is_file():
        try:
            stamp = json.loads(target.read_text()).get("finished", "previous").replace(":", "")
        except (OSError, ValueError):
            stamp = "previous"
        kept = folder / f"probe-{stamp}.json"
        target.replace(kept)
    write_atomic(target, json.dumps(result, indent=1, default=str) + "\n")
    return target, kept


def read_probe(folder: Path, cfg: TrainConfig) -> tuple[dict[str, Any] | None, str | None]:
    """The run folder's probe when it measured this config: (probe, None), else (None, why not) or (None, None)."""
    path = Path(folder) / PROBE_FILE
    if not path.is_file():
        return None, None
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{path} cannot be read ({exc}); run cellcheck probe again"
    if found.get("fingerprint") != fingerprint(cfg):
        return None, f"{path} measured another config: not used; run cellcheck probe again"
    return found, None


def render(result: Mapping[str, Any]) -> str:
    """The probe for people: the phases, each measurement beside the model, the forecast."""
    g = lambda b: f"{b / GiB:.2f} GiB" if b is not None else "-"  # noqa: E731
    measured, lines = result.get("measured") or {}, []
    lines.append(f"cellcheck probe: {result['config']} on {measured.get('device', '?')}, "
                 f"{result['seconds']:.0f} s")
    if result.get("stopped"):
        s = result["stopped"]
        lines.append(f"STOPPED at {g(s['at_bytes'])} after {s['elapsed_s']} s: the limit was {g(s['limit_bytes'])} "
                     f"(of {g(result['host']['available_bytes_at_start'])} available); the run needs more than that")
    lines.append(f"  {'phase':<11}{'peak':>11}{'median':>11}{'processes':>11}  notes")
    for name, p in result["phases"].items():
        note = ""
        if name in ("epoch", "worst"):
            loader = measured.get(name) or {}
            note = f"{loader.get('batches', 0)} batches, {loader.get('s_per_batch') or 0:.3f} s per batch"
            if p.get("growing_at_end"):
                note += "; STILL GROWING at the end"
        if name in ("validation", "scoring") and measured.get("validation"):
            v = measured["validation"]
            note = f"{v['case']} {'x'.join(map(str, v['shape']))}"
            if name == "scoring":
                note += (f": {v['windows']} window{'s' if v['windows'] != 1 else ''} in {v['seconds']:.1f} s "
                         f"(a warm-up window before them: {v['warmup_s']:.1f} s)")
        if p.get("gpu_used_bytes"):
            note += f"{'; ' if note else ''}GPU used {g(p['gpu_used_bytes'])} (pynvml)"
        lines.append(f"  {name:<11}{g(p['peak_bytes']):>11}{g(p['median_bytes']):>11}{p['processes']:>11}  {note}")
    model = result.get("model")
    if model:
        lines.append("  measured beside the model (calibrated on this machine: idle rank "
                     f"{g(model['calibration']['rank_base_bytes'])}, idle worker "
                     f"{g(model['calibration']['worker_base_bytes'])}):")
        for r in model["ram"] + model.get("vram", []):
            lines.append(f"    {r['what']}: {g(r['measured_bytes'])} measured, {g(r['predicted_bytes'])} "
                         f"{r['model']}, ratio {r['ratio']}{'' if r['verdict'] == 'ok' else '  ' + r['verdict'].upper()}")
        lines.append(f"    per rank {g(model['per_rank_measured_bytes'])} x {result['ranks']} "
                     f"rank{'s' if result['ranks'] != 1 else ''} = {g(model['job_measured_bytes'])}")
    for key, where in (("forecast", f"here ({measured.get('device')})"), ("forecast_for_gpu_job", "on the job's GPU")):
        if result.get(key):
            lines += forecast_lines(result[key], result, where)
    return "\n".join(lines) + "\n"


def forecast_lines(fc: Mapping[str, Any], result: Mapping[str, Any], where: str) -> list[str]:
    measured = result["measured"]
    lines = [f"  forecast {where}: {fc['steps_per_epoch']} steps per epoch x {fc['s_per_step']:.3f} s, "
             f"{human(fc['epoch_s'])} per epoch, {human(fc['validation_s'])} per validation; first validation after "
             f"{human(fc['first_validation_s'])}, the end after {human(fc['total_s'])}"]
    if fc["loader_only"]:
        lines.append(f"    measured without a GPU ({measured.get('device')}): the step time is the loader's alone, "
                     "a floor; the network's time on the job's GPU is not in it")
    elif fc["data_bound"]:
        idle = f", the GPU idle {fc['gpu_idle_fraction']:.0%} of the time" if fc["gpu_idle_fraction"] is not None else ""
        lines.append(f"    data-bound: the loader needs {fc['loader_s_per_step']:.3f} s per step, the network "
                     f"{fc['network_s_per_step']:.3f} s{idle}; about {fc['workers_needed']} workers would keep up")
    else:
        lines.append(f"    not data-bound: the loader needs {fc['loader_s_per_step']:.3f} s per step, the network "
                     f"{fc['network_s_per_step']:.3f} s")
    return lines


# --- what the gate and submit take from a probe ------------------------------------------------------------


def job_bytes(result: Mapping[str, Any], ranks: int) -> tuple[int | None, str]:
    """The job's host memory as measured, `ranks` ranks of the probe's per-rank peak, and how it was reckoned.

    A probe without CUDA measured a rank with no CUDA context: the RAM model's assumed idle GPU rank
    stands in for its measured idle rank where it is larger (a login node's probe of a GPU job).
    """
    from cellcheck.memory.ram import RANK_BASE_BYTES

    model = result.get("model") or {}
    per_rank = model.get("per_rank_measured_bytes")
    if per_rank is None:
        return None, "the probe measured nothing"
    how = f"probe peak {per_rank / GiB:.2f} GiB per rank"
    on_gpu = str((result.get("measured") or {}).get("device", "cpu")).startswith("cuda")
    base = (model.get("calibration") or {}).get("rank_base_bytes") or 0
    if not on_gpu and RANK_BASE_BYTES > base:
        per_rank += RANK_BASE_BYTES - base
        how += f" + {(RANK_BASE_BYTES - base) / GiB:.2f} GiB for a CUDA rank's idle host memory (probed without a GPU)"
    return per_rank * ranks, f"{how}, x {ranks} rank{'s' if ranks != 1 else ''}"


def mem_from_probe(result: Mapping[str, Any], ranks: int) -> tuple[str, str] | None:
    """SLURM --mem from a probe, with its headroom, and the comment saying so; None when it measured nothing."""
    from cellcheck.memory.ram import HEADROOM_FRACTION, slurm_mem

    need, how = job_bytes(result, ranks)
    if need is None or result.get("stopped"):
        return None
    return slurm_mem(int(need * (1 + HEADROOM_FRACTION))), f"{how}, + {HEADROOM_FRACTION:.0%} headroom"


def time_from_probe(result: Mapping[str, Any], cfg: TrainConfig) -> tuple[str, str] | None:
    """SLURM --time from the probe's timings for `cfg`'s schedule (the GPU job's: from the loader alone when
    probed without a GPU)."""
    from cellcheck.forecast import slurm_time

    measured = result.get("measured")
    if not measured or result.get("stopped"):
        return None
    on_gpu = str(measured.get("device", "cpu")).startswith("cuda")
    fc = forecast_of(cfg, measured, for_gpu_job=not on_gpu).to_json()
    source = ("the forecast from the loader alone (probed without a GPU: the network's time on the GPU is not in it)"
              if fc.get("loader_only") else f"the forecast on {measured.get('device')}")
    return slurm_time(fc["total_s"]), f"{source}: {human(fc['total_s'])}, + 25%, at least 10 min"


def probe_findings(result: Mapping[str, Any], *, ranks: int, mem: str | None, where: str | Path,
                   gpu: str | None = None) -> tuple[list, list[str]]:
    """The gate's findings from a probe (ram-exceeds, vram-exceeds on measurements) and its notes.

    A step measured on one GPU is held against the job's (`gpu`, a profile name: the config's), which
    may have less memory than the card the probe ran on."""
    from cellcheck.findings import finding
    from cellcheck.memory.gpus import gpu_profile
    from cellcheck.units import parse_bytes

    found, notes = [], []
    need, how = job_bytes(result, ranks)
    stopped = result.get("stopped")
    mem_bytes = parse_bytes(mem) if mem else None
    if stopped:
        reached = stopped["at_bytes"] * ranks
        if mem_bytes is not None and reached > mem_bytes:
            found.append(finding("ram-exceeds", None, where,
                                 f"cellcheck probe passed {reached / GiB:.1f} GiB for {ranks} rank(s) before it stopped "
                                 f"at this host's limit, above --mem {mem}: the job needs more than that",
                                 measured_bytes=reached, mem=mem, source="probe"))
        notes.append(f"the probe stopped at {stopped['at_bytes'] / GiB:.1f} GiB per rank (this host's limit) before "
                     "the run's peak: probe on a node with more memory to size --mem from it")
    elif need is not None and mem_bytes is not None and need > mem_bytes:
        sized = mem_from_probe(result, ranks)
        found.append(finding("ram-exceeds", None, where,
                             f"cellcheck probe measured {need / GiB:.1f} GiB ({how}), above --mem {mem}: ask for "
                             f"--mem={sized[0] if sized else '?'} or lower num_workers / prefetch_factor",
                             measured_bytes=need, mem=mem, source="probe"))
    cuda = (result.get("measured") or {}).get("step", {}).get("cuda") if result.get("measured") else None
    target = gpu_profile(gpu) if gpu else None
    if cuda and cuda["max_allocated_bytes"] > (target.total_bytes if target else cuda["total_bytes"]):
        card = f"the job's {target.name}" if target else cuda["name"]
        found.append(finding("vram-exceeds", None, where,
                             f"cellcheck probe's step allocated {cuda['max_allocated_bytes'] / GiB:.1f} GiB on "
                             f"{cuda['name']}, more than {card} has: lower batch_size or roi_size", source="probe"))
    for row in (result.get("model") or {}).get("ram", []) + (result.get("model") or {}).get("vram", []):
        if row["verdict"] != "ok":
            notes.append(f"MODEL BELOW MEASUREMENT: {row['what']}: {row['measured_bytes'] / GiB:.2f} GiB measured, "
                         f"{row['predicted_bytes'] / GiB:.2f} GiB {row['model']}: the model is wrong (please report it)")
    if need is not None and not stopped:
        notes.append(f"host memory measured by cellcheck probe ({result.get('finished')}): {need / GiB:.1f} GiB ({how})")
    return found, notes
