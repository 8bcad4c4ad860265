"""`cellcheck submit`: the gate on the login node, then an sbatch job sized from the gate's plan.

Every failed job in docs/INCIDENTS.md waited in the queue and died in seconds; here the gate runs
before `sbatch`, and again as the job's first step (slurm/train.sbatch). The job script is the
template filled in with Python's `string.Template`: lowercase `$names` are ours, UPPERCASE
ones belong to the shell. Resources:

- `--mem`: the command line's, else the config's `mem`, else the gate's host-RAM plan
  (`ram.slurm_mem`); refused before `sbatch` when no node of the partition has that much (`sinfo`).
- GPUs: the config's `gpus`, as `--gres=gpu:<profile>:<gpus>` (`gpu:l40s:2`); CPUs 8 per GPU.
- time: `--time`, else `estimate_seconds` below: patch voxels per epoch over an assumed L40S
  throughput, plus sliding-window validation, times 1.5, plus 15 minutes, rounded up to the
  hour and capped at the field's 11-day limit (a longer run requeues itself at the limit and
  resumes).

The rendered script is written to OUTPUT_DIR/job.sbatch (atomically); `sbatch` runs only when the
gate passes. An output_dir that already holds a run is refused before the gate, as the trainer refuses
it (exit 1), unless `--resume` says the job continues that run; a requeued job always resumes its own. Nothing heavy is imported until a command runs (the gate loads numpy, pandas, torch).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import string
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Callable, Mapping

from cellcheck.config import LoadedConfig, TrainConfig, load_config
from cellcheck.errors import CellcheckError
from cellcheck.run_folder import rerun_refusal

#: The training job template (one for all three networks: the network is the config's), in package data.
TEMPLATE_NAME = "train.sbatch"

#: Training throughput on one L40S with AMP, patch voxels per second (forward, backward, step).
#: NOT measured (no GPU on the development machine): deliberately low guesses, so that with
#: SAFETY the estimate errs long. Correct them from a first run's metrics.jsonl ("seconds" per
#: epoch), or give --time. Other GPU profiles get the same figures.
TRAIN_VOXELS_PER_S = {"segresnet": 8e6, "swinunetr": 2e6, "dints": 3e6}
#: Inference runs about this much faster per voxel than a training step (no backward, no optimizer).
INFERENCE_SPEEDUP = 3.0
#: The trainer's validation: sliding window at this overlap (trainer.infer's default).
VALIDATION_OVERLAP = 0.25
SAFETY = 1.5
#: Gate, data loading, model build, CUDA start-up; paid again after each requeue.
STARTUP_S = 15 * 60
#: The field cluster's walltime limit (docs/INCIDENTS.md, the cluster).
MAX_TIME_S = 11 * 24 * 3600
#: CPUs per GPU: the field's 16 for 2 L40S.
CPUS_PER_GPU = 8


class JobTemplate(string.Template):
    """`$name` / `${name}` with lowercase names only: `$SLURM_JOB_ID`, `${GPUS:-0}`, `$(...)` stay the shell's."""

    idpattern = r"[a-z][a-z0-9_]*"
    flags = 0  # not re.IGNORECASE: an UPPERCASE name is never ours

    def names(self) -> set[str]:
        return {m.group("named") or m.group("braced") for m in self.pattern.finditer(self.template)
                if m.group("named") or m.group("braced")}


@dataclass
class JobResources:
    """What the job asks SLURM for; `time_note` says where the time limit came from."""

    job_name: str
    partition: str | None
    gpus: int
    gres: str
    cpus: int
    mem: str
    time: str
    time_note: str
    mem_note: str = ""
    #: comments the job script carries above its --mem and --time lines (where a probe sized them)
    comments: dict[str, str] = field(default_factory=dict)


@dataclass
class Job:
    """A job ready to submit: the gate's report, the resources, the rendered script and its path."""

    report: Any  # cellcheck.report.Report
    resources: JobResources
    script: str
    path: Path


# --- time -------------------------------------------------------------------------------------

_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_time(text: str) -> int:
    """SLURM's --time forms in seconds: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S. Raises CellcheckError."""
    m = _TIME.match(text.strip())
    if not m:
        raise CellcheckError(f"--time {text!r} is not a SLURM time such as 2-00:00:00, 12:00:00 or 90")
    days, a, b, c = m.groups()
    if days is not None:  # D-H, D-H:M, D-H:M:S
        h, mi, s = int(a), int(b or 0), int(c or 0)
        return ((int(days) * 24 + h) * 60 + mi) * 60 + s
    if c is not None:  # H:M:S
        return (int(a) * 60 + int(b)) * 60 + int(c)
    if b is not None:  # M:S
        return int(a) * 60 + int(b)
    return int(a) * 60  # M


def format_time(seconds: float) -> str:
    """Seconds as D-HH:MM:SS."""
    s = int(math.ceil(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}-{h:02d}:{m:02d}:{s:02d}"


def estimate_seconds(cfg: TrainConfig, n_train: int, n_val: int, mean_voxels: float) -> float:
    """Wall time of the whole run (s), before rounding and the cap; see the module docstring.

    Per epoch each of `gpus` ranks takes ceil(n_train / gpus) * num_patches_per_image / batch_size
    steps (at most max_steps_per_epoch) of batch_size * prod(roi_size) voxels; a validation reads
    n_val crops of mean_voxels, (1 / (1 - overlap))^3 times over.
    """
    rate = TRAIN_VOXELS_PER_S[cfg.model]
    gpus, batch = cfg.gpus, cfg.batch_size
    steps = math.ceil(math.ceil(n_train / gpus) * cfg.num_patches_per_image / batch)
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    train_s = steps * batch * math.prod(cfg.roi_size) / rate
    val_s = n_val * mean_voxels / (1 - VALIDATION_OVERLAP) ** 3 / (rate * INFERENCE_SPEEDUP)
    validations = math.ceil(cfg.num_epochs / cfg.num_epochs_per_validation)
    return SAFETY * (cfg.num_epochs * train_s + validations * val_s) + STARTUP_S


def time_limit(cfg: TrainConfig, n_train: int, n_val: int, mean_voxels: float) -> tuple[str, str]:
    """(--time, how it was chosen): the estimate rounded up to whole hours, at most 11 days."""
    est = estimate_seconds(cfg, n_train, n_val, mean_voxels)
    hours = max(1, math.ceil(est / 3600))
    note = (f"estimated {est / 3600:.1f} h: {cfg.num_epochs} epochs of {n_train} training crops, "
            f"{cfg.model} at an assumed L40S throughput; --time overrides")
    if hours * 3600 > MAX_TIME_S:
        return format_time(MAX_TIME_S), note + "; capped at the 11-day limit: the job requeues itself there and resumes"
    return format_time(hours * 3600), note


def _split_counts(datalist: Path, dataroot: Path | None, fold: int, cases: int) -> tuple[int, int]:
    """(training, validation) crops for the config's fold, as the trainer splits them."""
    from cellcheck.datalist import load_datalist

    if not datalist.is_file():  # a CellMap zarr folder: count everything as training
        return cases, 0
    entries = [e for e in load_datalist(datalist, dataroot).entries if e.section == "training" and e.valid]
    n_val = sum(1 for e in entries if e.fold == fold)
    return len(entries) - n_val, n_val


# --- memory -----------------------------------------------------------------------------------

def node_memory_mib(partition: str | None, env: Mapping[str, str] | None = None) -> int | None:
    """The largest node's memory (MiB) in `partition` (default: the cluster's default one), from
    `sinfo`; None when sinfo is absent or does not answer."""
    if shutil.which("sinfo", path=(env or os.environ).get("PATH")) is None:
        return None
    try:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%P %m"], capture_output=True, text=True, timeout=30,
                              env=dict(env) if env is not None else None)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    sizes = []
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) != 2:
            continue
        name, mib = fields
        default = name.endswith("*")
        if (partition is None and default) or name.rstrip("*") == partition:
            sizes.append(int(mib.rstrip("+")) if mib.rstrip("+").isdigit() else 0)
    return max(sizes) if sizes else None


def check_node_memory(mem: str, predicted: str | None, partition: str | None,
                      env: Mapping[str, str] | None = None) -> None:
    """Refuse a --mem no node has, before SLURM would ("Requested node configuration is not available")."""
    from cellcheck.units import parse_bytes

    node_mib = node_memory_mib(partition, env)
    if node_mib is None:
        return
    where = f"partition '{partition}'" if partition else "the default partition"
    if parse_bytes(mem) > node_mib * 2**20:
        plan = f"the gate's plan predicts {predicted} for this job" if predicted else "the gate made no memory plan"
        fix = (f"ask for --mem {predicted}" if predicted and parse_bytes(predicted) <= node_mib * 2**20 else
               "lower num_workers / prefetch_factor, or choose a partition with larger nodes")
        raise CellcheckError(f"--mem {mem} is more than any node of {where} has ({node_mib} MiB, sinfo): SLURM "
                             f"would refuse the job; {plan}: {fix}")


# --- the job ----------------------------------------------------------------------------------

def _absolute(path: Path | str) -> Path:
    """An absolute, normalised path as the user named it (links not followed): what a job on another node opens."""
    return Path(os.path.abspath(path))


def _sbatch_safe(path: Path) -> str:
    """A path an #SBATCH line can carry (no quoting there) and the shell takes unquoted."""
    text = str(path)
    bad = sorted(set(re.findall(r"[^A-Za-z0-9_./+@:,=-]", text)))
    if bad:
        raise CellcheckError(f"{text}: output_dir holds {' '.join(repr(c) for c in bad)}, which #SBATCH lines cannot "
                             "carry; choose an output_dir without spaces or shell characters")
    return text


def run_gate_for_job(loaded: LoadedConfig, mem: str | None = None, env: Mapping[str, str] | None = None,
                     probe: Mapping[str, Any] | None = None):
    """The gate as the job will face it; returns its Report (with the memory plan under extra['gate'])."""
    from cellcheck.gate import run_gate

    return run_gate(config=loaded, plan={"mem": mem, "gpus": None}, env=os.environ if env is None else env, probe=probe)


def plan_resources(report, cfg: TrainConfig | None, config: Path, *, partition: str | None = None,
                   time: str | None = None, mem: str | None = None, cpus: int | None = None,
                   gres: str | None = None, probe: Mapping[str, Any] | None = None) -> JobResources:
    """Resources from the gate's report and the config, overridden where given; from `probe` (a `cellcheck
    probe` report) where it measured them and the command line gives none."""
    from cellcheck.memory.gpus import gpu_profile
    from cellcheck.probe import PROBE_FILE, mem_from_probe, time_from_probe

    if cfg is None:
        raise CellcheckError(f"{config}: the config is not valid; run cellcheck gate --config {config}")
    plan = report.extra["gate"]["memory"] or {}
    predicted = (plan.get("ram") or {}).get("slurm_mem")
    comments: dict[str, str] = {}
    where = _absolute(cfg.output_dir) / PROBE_FILE
    sized = mem_from_probe(probe, cfg.gpus) if probe is not None and mem is None else None
    if sized is not None:
        mem, mem_note = sized[0], f"from cellcheck probe ({where}): {sized[1]}"
        comments["mem"] = f"--mem={mem} {mem_note}"
    else:
        mem_note = "given with --mem" if mem else "the config's mem" if cfg.mem else "the gate's host-RAM plan"
        mem = mem or cfg.mem or predicted
    if not mem:
        raise CellcheckError(f"{config}: no memory plan (no readable case shapes) and no mem; give --mem")
    timed = time_from_probe(probe, cfg) if probe is not None and time is None else None
    if timed is not None:
        time, note = timed[0], f"from cellcheck probe: {timed[1]}"
        comments["time"] = f"--time={time} from cellcheck probe ({where}): {timed[1]}"
    elif time is None:
        n_train, n_val = _split_counts(cfg.datalist, cfg.dataroot, cfg.fold, report.cases)
        mean_shape = (plan.get("dataset") or {}).get("mean_shape") or [0, 0, 0]
        time, note = time_limit(cfg, n_train, n_val, math.prod(mean_shape))
    else:
        time, note = format_time(parse_time(time)), "given with --time"
    return JobResources(
        job_name=f"cellcheck-{cfg.model}", partition=partition, gpus=cfg.gpus,
        gres="" if gres in ("", "none") else gres or f"gpu:{gpu_profile(cfg.gpu).name.lower()}:{cfg.gpus}",
        cpus=cpus or CPUS_PER_GPU * cfg.gpus, mem=mem, time=time, time_note=note, mem_note=mem_note,
        comments=comments)


def render(template_text: str, values: Mapping[str, str], source: str = "template",
           comments: Mapping[str, str] | None = None) -> str:
    """Fill a job template; an #SBATCH line whose value comes out empty is disabled (`##SBATCH`).

    `comments` {"mem": text, ...}: a `# text` line above the `#SBATCH --mem=` line (say where a value came from).
    """
    tpl = JobTemplate(template_text)
    unknown = sorted(tpl.names() - set(values))
    if unknown:
        raise CellcheckError(f"{source}: unknown template names {', '.join('$' + n for n in unknown)}; known: "
                             f"{', '.join('$' + n for n in sorted(values))} (write $$ for a literal $)")
    lines = []
    for line in tpl.safe_substitute(values).splitlines():
        if re.match(r"#SBATCH\s+--[\w-]+=\s*$", line):
            line = "#" + line + "  (not set: the cluster's default)"
        option = re.match(r"#SBATCH\s+--([\w-]+)=", line)
        if option and (comments or {}).get(option.group(1)):
            lines.append(f"# {comments[option.group(1)]}")
        lines.append(line)
    return "\n".join(lines) + "\n"


def shipped(name: str) -> Traversable:
    """A file shipped with cellcheck under slurm/ (`train.sbatch`, `configs/dints-l40s.yaml`), wheel or checkout."""
    return resources.files("cellcheck").joinpath("slurm", name)


def read_template(template: Path | None = None) -> str:
    """The job template's text: `template`, else the shipped train.sbatch."""
    source = template if template is not None else shipped(TEMPLATE_NAME)
    try:
        return source.read_text(encoding="utf-8")
    except OSError as exc:
        raise CellcheckError(f"{source}: cannot read the job template ({exc.strerror or exc}); give --template") from None


def prepare_job(config_path: Path, template: Path | None = None, *, overrides: Mapping[str, Any] | None = None,
                partition: str | None = None, time: str | None = None, mem: str | None = None,
                cpus: int | None = None, gres: str | None = None, python: str = "python3",
                report=None, env: Mapping[str, str] | None = None, resume: bool = False,
                probe: Mapping[str, Any] | None = None) -> Job:
    """Gate (unless `report` is given), resources and the rendered script, nothing written.

    Renders whether or not the gate passed (`submit` is what refuses). `resume`: the job's first start
    continues the run in output_dir (`--resume`); requeues always do.
    """
    config = _absolute(config_path)
    loaded = load_config(config, overrides)
    if report is None:
        report = run_gate_for_job(loaded, mem, env)
    cfg = loaded.config
    res = plan_resources(report, cfg, config, partition=partition, time=time, mem=mem, cpus=cpus, gres=gres,
                         probe=probe)
    text = read_template(template)
    set_args = " ".join(f"--set {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in (overrides or {}).items())
    values = {
        "job_name": res.job_name, "partition": res.partition or "", "gres": res.gres, "cpus": str(res.cpus),
        "mem": res.mem, "time": res.time, "output_dir": _sbatch_safe(_absolute(cfg.output_dir)),
        "config": shlex.quote(str(config)), "python": shlex.quote(python), "set_args": set_args,
        "gpus": str(res.gpus), "model": cfg.model, "resume": "--resume" if resume else "",
    }
    return Job(report=report, resources=res,
               script=render(text, values, str(template or "train.sbatch"), res.comments),
               path=_absolute(cfg.output_dir) / "job.sbatch")


def _check_arguments(time: str | None, mem: str | None, template: Path | None) -> None:
    from cellcheck.units import parse_bytes

    if time is not None:
        parse_time(time)
    if mem is not None:
        try:
            parse_bytes(mem)
        except ValueError as exc:
            raise CellcheckError(f"--mem: {exc}") from None
    if template is not None and not Path(template).is_file():
        raise CellcheckError(f"{template}: no such job template; give a file such as slurm/train.sbatch")


def submit(config_path: Path, dry_run: bool = False, *, template: Path | None = None,
           overrides: Mapping[str, Any] | None = None, partition: str | None = None, time: str | None = None,
           mem: str | None = None, cpus: int | None = None, gres: str | None = None, python: str = "python3",
           env: Mapping[str, str] | None = None, say: Callable[[str], None] | None = None,
           show: Callable[[str], None] | None = None, resume: bool = False, probe: bool = False) -> int:
    """Gate, size, write OUTPUT_DIR/job.sbatch and `sbatch` it (print it instead with `dry_run`).

    `probe`: run `cellcheck probe` on the config first (kept as OUTPUT_DIR/probe.json); the gate judges
    host memory by it and the job's --mem and --time come from it (unless given), with a comment saying so.

    Returns the exit status: 0 submitted (or printed), 1 refused (by the gate, or because output_dir
    holds a run and `resume` is not set: nothing is written then). Raises CellcheckError
    (exit 2) when sbatch is missing, the memory is more than a node has, or sbatch refuses.
    `say` gets progress lines, `show` the script on a dry run (the CLI prints them; by default they go nowhere).
    """
    from cellcheck.files import write_atomic
    from cellcheck.report import render_text

    env = os.environ if env is None else env
    say = say or (lambda line: None)
    show = show or (lambda text: None)
    if not dry_run and shutil.which("sbatch", path=env.get("PATH")) is None:
        raise CellcheckError("sbatch not found on PATH: this machine is not a SLURM submit host; run cellcheck submit "
                             "on the cluster's login node, or --dry-run to write the job script only")
    _check_arguments(time, mem, template)  # before the gate's seconds, not after
    refusal = None if resume else _rerun_refusal(Path(config_path), overrides)
    if refusal:
        say(f"cellcheck submit: {refusal}; nothing submitted")
        return 1
    probed = None
    if probe:
        from cellcheck.probe import loaded_or_fail, render as render_probe, run_probe, save_probe

        say("cellcheck submit: probing the run's data path before it is sized (cellcheck probe)")
        probed = run_probe(_absolute(config_path), overrides)
        saved, _ = save_probe(probed, loaded_or_fail(_absolute(config_path), overrides).config.output_dir)
        say(render_probe(probed).rstrip("\n") + f"\ncellcheck submit: probe report in {saved}")
    report = run_gate_for_job(load_config(_absolute(config_path), overrides), mem, env, probe=probed)
    if not report.passed:
        say(render_text(report).rstrip("\n"))
        say(f"cellcheck submit: refused by the gate (exit {report.exit_code}); nothing submitted")
        return report.exit_code
    job = prepare_job(config_path, template, overrides=overrides, partition=partition, time=time, mem=mem, cpus=cpus,
                      gres=gres, python=python, report=report, env=env, resume=resume, probe=probed)
    res = job.resources
    predicted = ((report.extra["gate"]["memory"] or {}).get("ram") or {}).get("slurm_mem")
    check_node_memory(res.mem, predicted, partition, env)
    job.path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(job.path, job.script)
    say(f"gate passed ({report.cases} cases); job: --gres {res.gres or 'none'}, {res.cpus} CPUs, --mem {res.mem} "
        f"({res.mem_note}; model plan {predicted}), --time {res.time} ({res.time_note})")
    if dry_run:
        show(job.script)
        say(f"dry run: written to {job.path}, not submitted")
        return 0
    proc = subprocess.run(["sbatch", "--parsable", str(job.path)], capture_output=True, text=True,
                          env=dict(env), cwd=job.path.parent)
    if proc.returncode != 0:
        msg = " ".join(proc.stderr.split()) or f"exit {proc.returncode}"
        raise CellcheckError(f"sbatch refused {job.path}: {msg}")
    job_id = proc.stdout.strip().split(";")[0]
    say(f"submitted job {job_id}: log {job.path.parent / f'slurm-{job_id}.log'}")
    return 0


def _rerun_refusal(config: Path, overrides: Mapping[str, Any] | None) -> str | None:
    """The trainer's refusal of a new run in an output_dir holding one, asked before sbatch; None if none.

    An unreadable config is the gate's to report.
    """
    try:
        out = load_config(config, overrides).usable.get("output_dir")
    except CellcheckError:
        return None
    return rerun_refusal(out, "cellcheck submit --resume") if out is not None else None
