"""The training run, top to bottom: gate, data, model, loss, step, checkpoint, record.

Nothing touches a GPU before the gate passes; the gate's report is saved in the run folder
either way. Before the gate, the run folder is checked: one that already holds a run is never
overwritten (`cellcheck/run_folder.py`): without `--resume` the run is refused (exit 1) and nothing
is written; `--resume` continues it from `last.pt` exactly where it stopped, and its records only
grow (a resume's gate report and memory plan are appended to `gate.jsonl` and `memory_plan.jsonl`;
a resume with nothing left to do writes nothing else). A run leaves `gate.json`, `memory_plan.json`,
`metrics.jsonl`, `memory.jsonl`, `memory.png`, `progress.png`, `last.pt` (everything `--resume`
needs) and `best.pt` (what inference needs: weights, network config, class names, intensity rule;
no optimizer), every file written atomically. It says what it does (`trainer/progress.py`): a first
line (what runs where), one line per epoch, a last line (where everything is). Epochs are counted
from 1 everywhere: what it says, `metrics.jsonl`, the curves. SIGTERM / SIGUSR1 (SLURM pre-emption)
and SIGINT (Ctrl-C) save `last.pt` after the step under way, with the losses of the epoch so far,
and exit (0, or 130 for Ctrl-C); `--resume` finishes that epoch as if nothing had happened.

Under DDP every decision is taken by all ranks together, so no rank can wait alone in a
collective: one all-reduce per step says whether any rank's loss was non-finite (then every
rank skips the step) and whether any rank got a stop signal; validation is split across the
ranks (each scores a share of the crops) and the per-class Dice sums are all-reduced, so early
stopping and the best checkpoint are the same decision everywhere.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.distributed as dist

from cellcheck.config import LoadedConfig, TrainConfig, load_config
from cellcheck.errors import EXIT_INTERRUPTED, CellcheckError
from cellcheck.gate import run_gate
from cellcheck.intensity import IntensityRule
from cellcheck.memory.profiler import MemoryProfiler
from cellcheck.files import write_atomic
from cellcheck.report import render_json, render_text
from trainer.curves import TensorBoardLog, epoch_records, plot_progress, tensorboard_missing
from trainer.run_data import RunData, open_data
from trainer.validation import device_input, score_case
from cellcheck.models.losses import (DeepSupervisionPartialLoss, PartialAnnotationLoss, VoxelTargets,
                                    inverse_frequency_weights)
from cellcheck.models.networks import build_network, outputs_as_list
from trainer.progress import Console, epoch_line, files_line, human_seconds
from cellcheck.run_folder import RUN_FILES, latest_start_record, rerun_refusal, save_start_record
from cellcheck.words import counted

#: Exit statuses: 0 done (or stopped cleanly on SIGTERM / SIGUSR1, resumable), 1 refused (by the gate, or
#: because output_dir already holds a run and --resume was not given), 2 a usage error (the CLI's error
#: edge), 3 stopped on repeated non-finite losses, 130 stopped by Ctrl-C (SIGINT) with a checkpoint.
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_NONFINITE = 0, 1, 2, 3


@dataclass
class State:
    """Everything `--resume` needs besides the weights: where the run is and how it is doing."""

    epoch: int = 0  # epochs done; the one under way is epoch + 1
    step_in_epoch: int = 0
    epoch_losses: list[float] = field(default_factory=list)  # of the steps done in the epoch under way
    epoch_seconds: float = 0.0  # spent in the epoch under way before a stop
    global_step: int = 0
    best_metric: float = -1.0
    best_epoch: int = -1
    bad_validations: int = 0
    history: list[float] = field(default_factory=list)


class NonFiniteGuard:
    """Count skipped steps (a NaN/Inf loss on any rank); give up after `limit` in a row (docs/INCIDENTS.md, incident 15)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.in_a_row, self.total = limit, 0, 0

    def record(self, finite: bool) -> None:
        """One step's verdict, the same on every rank."""
        if finite:
            self.in_a_row = 0
        else:
            self.in_a_row += 1
            self.total += 1

    @property
    def exhausted(self) -> bool:
        return self.in_a_row >= self.limit


class StopSignal:
    """SIGTERM / SIGUSR1 (SLURM) and SIGINT (Ctrl-C) set a flag; the loop checkpoints after the step under way
    and exits. A second Ctrl-C stops at once, without a checkpoint (KeyboardInterrupt, exit 130).

    A context manager: the handlers that were there before come back on exit (a notebook, a test runner).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

    def __init__(self, rank: int = 0) -> None:
        self.received: str | None = None
        self.rank = rank
        self.pid = os.getpid()
        self._before: dict[int, Any] = {}

    def __enter__(self) -> "StopSignal":
        for sig in self.SIGNALS:
            self._before[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.pid:
            return  # a DataLoader worker forked with this handler (Ctrl-C reaches the whole process group)
        name = signal.Signals(signum).name
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C again: stop now
            if self.rank == 0 and self.received is None:
                os.write(2, b"cellcheck train: SIGINT: saving a checkpoint after this step "
                            b"(Ctrl-C again stops at once, without one)\n")
        self.received = self.received or name

    @property
    def exit_status(self) -> int:
        """130 for Ctrl-C, as shells report it; 0 for SLURM's signals (the job requeues and resumes)."""
        return EXIT_INTERRUPTED if self.received == "SIGINT" else EXIT_OK


def train(config: Path, overrides: Mapping[str, Any] | None = None, *, resume: bool = False,
          mem: str | None = None, env: Mapping[str, str] | None = None, console: Console | None = None) -> int:
    """Run (or, with `resume`, continue) one training run; returns the exit status.

    What the run says goes through `console` (default: stdout and stderr of rank 0).
    """
    env = os.environ if env is None else env
    loaded = load_config(Path(config), overrides)
    rank, world = join_process_group(loaded.usable.get("ddp_timeout_s"))
    console = console or Console(rank)
    console.rank = rank

    # 0. before anything is written: a run already in output_dir, an optional package the config needs
    early = _refusal_before_the_gate(loaded, resume) if rank == 0 else None
    early = _broadcast(early)
    if early is not None:
        console.warn(f"cellcheck train: {early[1]}")
        return leave_process_group(early[0], world)

    # 1. the gate: refuse before any GPU memory is touched
    plan = {"mem": mem or _slurm_mem(env), "gpus": world if world > 1 else None}
    report = run_gate(config=loaded, plan=plan, env=env) if rank == 0 else None
    verdict = _broadcast(report.passed if report else None)
    if rank == 0:  # the start's records; in a folder that holds a run, appended to its logs (run_folder)
        out = loaded.usable.get("output_dir")
        saved_to = None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            saved_to = save_start_record(out, "gate.json", render_json(report))
        if not verdict:
            failures = [f for f in report.findings if f.severity.value in ("error", "warning")]
            where = f"report in {saved_to}" if saved_to else "no output_dir to save the report in"
            console.warn(f"cellcheck train: refused by the gate ({counted(len(failures), 'problem')}, {where}):")
            console.warn(render_text(report).rstrip("\n"))
            return leave_process_group(EXIT_REFUSED, world)
        save_start_record(out, "memory_plan.json", report.extra["gate"]["memory"])
    if not verdict:
        return leave_process_group(EXIT_REFUSED, world)
    cfg: TrainConfig = loaded.config  # the gate passed: every key is valid
    out = cfg.output_dir
    device = run_device(rank)
    if device.type == "cuda":
        _check_device_memory(cfg, device)

    # 2. data, and the one intensity rule of the run (stored in every checkpoint, applied at inference)
    data = open_data(cfg, resumed=resume and (out / "last.pt").is_file(), rank=rank)
    rule = data.rule

    # 3. model, loss, optimizer
    torch.manual_seed(cfg.seed)
    net = build_network(cfg.model, cfg.num_classes, roi_size=cfg.roi_size, deep_supervision=cfg.deep_supervision,
                        width=cfg.network_width).to(device)
    model = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    loss_fn = build_loss(cfg, data.annotated).to(device)
    if cfg.compile:
        model, loss_fn = torch.compile(model), torch.compile(loss_fn)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    amp_dtype = amp_dtype_for(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    state = State()
    resumed = resume and (out / "last.pt").is_file()
    if resumed:
        state = _load_checkpoint(out / "last.pt", net, optimizer, scaler)
    names = list(cfg.classes.names)
    saved = {"model": cfg.model, "config": cfg.to_json(), "intensity": rule.to_json(), "class_names": names}
    console.line(_first_line(cfg, net, device, world, amp_dtype, data, out, state, resume, resumed))

    # 4. the loop, recorded and shown (a resume with nothing left to do touches no record)
    to_do = state.epoch < cfg.num_epochs
    history = epoch_records(out / "metrics.jsonl") if rank == 0 else []
    board = TensorBoardLog(out / "tensorboard") if cfg.tensorboard and rank == 0 and to_do else None
    guard = NonFiniteGuard(cfg.max_nan_steps)
    status, ending, signalled = EXIT_OK, None, False
    started, first_epoch = time.time(), state.epoch
    profiler = MemoryProfiler(out / "memory.jsonl", interval_s=1.0, keep_records=False) if rank == 0 and to_do else None
    with StopSignal(rank) as stop, profiler or nullcontext():
        while state.epoch < cfg.num_epochs and ending is None:
            if stop.received and world == 1:  # it came during validation: last.pt already holds that epoch
                ending, signalled, status = f"stopped by {stop.received} after epoch {state.epoch} (resumable)", \
                    True, stop.exit_status
                console.warn(f"cellcheck train: {stop.received}: checkpoint saved after epoch {state.epoch}; "
                             "continue with --resume")
                break
            t0 = time.time() - state.epoch_seconds
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            losses = [torch.tensor(v, device=device) for v in state.epoch_losses]  # of the steps before a stop
            skip = state.step_in_epoch
            model.train()
            loader = data.loader(state.epoch, rank, world)
            title = f"epoch {state.epoch + 1}/{cfg.num_epochs}"
            with console.steps(title, max(0, steps_per_epoch(len(loader), cfg) - skip)) as advance:
                for step_index, patches in enumerate(_steps(loader, cfg.batch_size)):
                    if step_index < skip:
                        continue  # resumed mid-epoch: these steps were already taken
                    if cfg.max_steps_per_epoch and step_index >= cfg.max_steps_per_epoch:
                        break
                    loss, stopping = train_step(model, loss_fn, optimizer, scaler, patches, device, amp_dtype,
                                                stop.received is not None, rule)
                    stopping = stopping or (world == 1 and stop.received is not None)  # came during the step
                    advance()
                    state.step_in_epoch = step_index + 1
                    guard.record(loss is not None)
                    if loss is not None:
                        state.global_step += 1
                        losses.append(loss)
                    elif guard.exhausted:
                        _log(out, rank, {"event": "nonfinite-stop", "epoch": state.epoch + 1,
                                         "in_a_row": guard.in_a_row})
                        console.warn(f"cellcheck train: {guard.in_a_row} non-finite losses in a row (on some rank); "
                                     "stopping (check for rare classes, the learning rate, AMP)")
                        status, ending = EXIT_NONFINITE, f"stopped in epoch {state.epoch + 1} on non-finite losses"
                        break
                    if stopping:  # every rank learnt it in the same all-reduce: all stop at this step
                        name = stop.received or "signal on another rank"
                        state.epoch_losses = [float(v) for v in losses]  # the epoch's losses so far go along
                        state.epoch_seconds = time.time() - t0
                        _save(out / "last.pt", saved, net, state, rank, optimizer, scaler)
                        _log(out, rank, {"event": "signal", "signal": name, "epoch": state.epoch + 1,
                                         "step_in_epoch": state.step_in_epoch})
                        console.warn(f"cellcheck train: {name}: checkpoint saved in epoch {state.epoch + 1} after "
                                     f"step {state.step_in_epoch}; continue with --resume")
                        ending, signalled = f"stopped by {name} in epoch {state.epoch + 1} (resumable)", True
                        status = stop.exit_status
                        break
            if ending is not None:
                break
            record = {"epoch": state.epoch + 1,
                      "train_loss": float(torch.stack(losses).mean()) if losses else None,
                      "steps": len(losses), "nonfinite_skipped": guard.total, "seconds": round(time.time() - t0, 3),
                      "learning_rate": optimizer.param_groups[0]["lr"]}
            state.epoch, state.step_in_epoch, state.epoch_losses, state.epoch_seconds = state.epoch + 1, 0, [], 0.0
            if state.epoch % cfg.num_epochs_per_validation == 0 or state.epoch == cfg.num_epochs:
                t_val = time.time()
                record.update(validate(net, data.validation, cfg.roi_size, names, rule, device, amp_dtype, rank=rank,
                                       world=world))
                record["val_seconds"] = round(time.time() - t_val, 3)
                improved = record["val_dice_mean"] > state.best_metric
                if improved:
                    state.best_metric, state.best_epoch, state.bad_validations = record["val_dice_mean"], state.epoch, 0
                else:
                    state.bad_validations += 1
                state.history.append(record["val_dice_mean"])
                if improved:
                    _save(out / "best.pt", saved, net, state, rank)
            if device.type == "cuda":
                record["max_memory_allocated"] = torch.cuda.max_memory_allocated(device)
                record["max_memory_reserved"] = torch.cuda.max_memory_reserved(device)
            if profiler:
                record["host_peak_bytes"] = (profiler.summary()["peak"] or {}).get("pss_bytes")
            _save(out / "last.pt", saved, net, state, rank, optimizer, scaler)
            _log(out, rank, record)
            if rank == 0:
                history.append(record)
                plot_progress(history, out / "progress.png", title=f"{out.name}: {cfg.model}, loss {cfg.loss}")
                if board:
                    board.add(record, state.global_step)
                console.line(epoch_line(record, cfg.num_epochs))
            if profiler:
                profiler.mark(f"epoch {state.epoch}")
            if state.bad_validations >= cfg.early_stopping_patience:
                _log(out, rank, {"event": "early-stop", "epoch": state.epoch, "best_epoch": state.best_epoch})
                ending = (f"stopped early after epoch {state.epoch}: no better validation Dice in "
                          f"{state.bad_validations} validations")
    if rank == 0:
        if board:
            board.close()
        if to_do:
            _plot_memory(out)
        console.line(_last_line(ending, state, cfg, first_epoch, time.time() - started, out))
    return leave_process_group(status, world, barrier=signalled)


def _refusal_before_the_gate(loaded: LoadedConfig, resume: bool) -> tuple[int, str] | None:
    """(exit status, one line) when the run must not start, checked before anything is written; else None.

    An invalid config is the gate's to report; what can be read of it is checked here.
    """
    out = loaded.usable.get("output_dir")
    if out is not None and not resume:
        refusal = rerun_refusal(out)
        if refusal:
            return EXIT_REFUSED, refusal
    if loaded.usable.get("tensorboard") is True:
        missing = tensorboard_missing()
        if missing:
            return EXIT_USAGE, missing
    return None


def steps_per_epoch(batches: int, cfg: TrainConfig) -> int:
    """Optimizer steps an epoch of `batches` loader batches takes (the last batch may take fewer)."""
    patches = max(1, cfg.batch_size // cfg.num_patches_per_image) * cfg.num_patches_per_image
    steps = batches * -(-patches // cfg.batch_size)
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


def _first_line(cfg: TrainConfig, net: torch.nn.Module, device: torch.device, world: int,
                amp_dtype: torch.dtype | None, data: RunData, out: Path, state: State, resume: bool,
                resumed: bool) -> str:
    """What will run where: network, device and ranks, data, schedule, loss, start point, run folder."""
    params = sum(p.numel() for p in net.parameters())
    where = f"{device.type}" + (f" x {world} ranks (DDP)" if world > 1 else ", 1 rank")
    amp = f", {str(amp_dtype).removeprefix('torch.')} AMP" if amp_dtype else ""
    cap = f" of at most {counted(cfg.max_steps_per_epoch, 'step')}" if cfg.max_steps_per_epoch else ""
    if resumed and state.step_in_epoch:
        start = f"resuming epoch {state.epoch + 1} after step {state.step_in_epoch}"
    elif resumed:
        start = f"resuming after epoch {state.epoch}"
    elif resume:
        start = "--resume: no checkpoint yet, starting at epoch 1"
    else:
        start = "new run"
    roi = "x".join(str(r) for r in cfg.roi_size)
    return (f"cellcheck train: {cfg.model} ({params / 1e6:.1f} M parameters) on {where}{amp}; "
            f"{data.describe()}; {counted(cfg.num_epochs, 'epoch')}{cap}, batch {cfg.batch_size} "
            f"of {roi}, loss {cfg.loss}; {start}; writing to {out}")


def _last_line(ending: str | None, state: State, cfg: TrainConfig, first_epoch: int, seconds: float,
               out: Path) -> str:
    """Where everything is: how the run ended, its best validation, the files with checkpoint sizes."""
    if ending is None:
        ending = (f"finished epoch {state.epoch} of {cfg.num_epochs}" if state.epoch > first_epoch else
                  f"nothing to do: the run is already at epoch {state.epoch} of {cfg.num_epochs} "
                  "(raise num_epochs to train on)")
    best = f" (best val Dice {state.best_metric:.3f} after epoch {state.best_epoch})" if state.best_epoch >= 0 else ""
    return f"cellcheck train: {ending} in {human_seconds(seconds)}{best}; {files_line(out, RUN_FILES)}"


def build_loss(cfg: TrainConfig, annotated: np.ndarray) -> DeepSupervisionPartialLoss:
    """The loss the config asks for: masked or the unmasked baseline, batch Dice, squared_pred, class weights.

    `annotated`: (N, C) bool, the classes each training crop is annotated for; `class_weights:
    inverse_frequency` weighs each class by 1 / (training crops annotating it).
    """
    weights = cfg.class_weights
    if weights == "inverse_frequency":
        weights = inverse_frequency_weights(torch.as_tensor(annotated)) if len(annotated) else None
    single = PartialAnnotationLoss(
        num_classes=cfg.num_classes, batch=cfg.batch_dice, squared_pred=cfg.squared_pred,
        class_weights=weights, lambda_dice=cfg.lambda_dice, lambda_bce=cfg.lambda_bce,
        masked=cfg.loss == "partial",
    )
    return DeepSupervisionPartialLoss(single)


def _steps(loader, batch_size: int):
    """Split each loader batch of patches into steps of `batch_size` patches (Auto3DSeg's num_patches_per_iter)."""
    for batch in loader:
        n = batch["image"].shape[0]
        for i in range(0, n, batch_size):
            yield {k: v[i : i + batch_size] for k, v in batch.items() if isinstance(v, torch.Tensor)}


def train_step(model, loss_fn, optimizer, scaler, patches, device, amp_dtype, stop_requested: bool,
               rule: IntensityRule | None = None) -> tuple[torch.Tensor | None, bool]:
    """One optimizer step, agreed by every rank: (detached loss, or None when a rank's loss was not finite; stop).

    Patches are a datalist batch (float32 image, uint8 label, (B, C) annotation mask) or a store batch
    (uint8 image and packed present / known masks; the image becomes network input by `rule` on the
    device). The verdict is one all-reduce (MAX) of [loss not finite, stop requested] before backward,
    so a rank with a NaN never skips the gradient all-reduce its peers enter: all skip together. It is
    the step's one host sync; the loss stays on the device.
    """
    image = _plain(patches["image"])
    image = image.to(device, non_blocking=True) if image.is_floating_point() else device_input(image, rule, device)
    if "present" in patches:
        targets, annotated = VoxelTargets(patches["present"], patches["known"]).to(device, non_blocking=True), None
    else:
        targets = _plain(patches["label"]).to(device, non_blocking=True)  # uint8 all the way to the loss
        annotated = _plain(patches["annotated"]).to(device)
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        outputs = outputs_as_list(model(image))
    loss = loss_fn(outputs, targets, annotated)  # fp32 inside the loss, whatever the logits' dtype
    flags = torch.stack([~torch.isfinite(loss.detach()), torch.tensor(stop_requested, device=device)]).int()
    if dist.is_initialized():
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    nonfinite, stop = (bool(v) for v in flags.tolist())
    if nonfinite:
        return None, stop
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), stop


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor from MONAI's MetaTensor; why: its Python __torch_function__ on every op slows the
    network and torch.compile cannot trace it (the patches out of MONAI transforms are MetaTensors)."""
    return t.as_tensor() if hasattr(t, "as_tensor") else t


def validate(net, cases: Sequence[Any], roi_size: Sequence[int], names: Sequence[str], rule: IntensityRule,
             device: torch.device, amp_dtype: torch.dtype | None = None, *, rank: int = 0,
             world: int = 1) -> dict[str, Any]:
    """Per-class Dice (sigmoid > 0.5) over each crop's known voxels, averaged per class over crops.

    `cases`: datalist `Case`s or store validation crops, each read window by window (trainer.validation).
    Each rank scores its share of the crops (every world-th); the per-class sums of Dice and crop
    counts are all-reduced, so every rank returns the same numbers and no rank waits in a collective
    while another validates alone. `names`: the classes in channel order. Returns
    {"val_dice": {class: dice}, "val_dice_mean"}.
    """
    num_classes = len(names)
    sums = torch.zeros(2, num_classes, dtype=torch.float64)  # Dice sum, crops counted
    net.eval()
    with torch.inference_mode():
        for case in cases[rank::world]:
            crop = case.validation(num_classes)
            dice, counted = score_case(net, crop.read, crop.shape, roi_size, num_classes, rule, device,
                                       amp=amp_dtype is not None)
            sums[0] += dice
            sums[1] += counted
    net.train()
    if dist.is_initialized():
        reduced = sums.to(device)
        dist.all_reduce(reduced)
        sums = reduced.cpu()
    seen = sums[1] > 0
    dice = {names[c]: float(sums[0, c] / sums[1, c]) for c in range(num_classes) if seen[c]}
    return {"val_dice": dice, "val_dice_mean": float(np.mean(list(dice.values()))) if dice else 0.0}


def _save(path: Path, saved: Mapping[str, Any], net, state: State, rank: int, optimizer=None, scaler=None) -> None:
    """Atomic checkpoint (rank 0 only): a reader never sees half a file, a crash never loses the last one.

    `saved` holds what inference needs besides the weights: model, config, class names, intensity rule.
    With `optimizer` and `scaler` (last.pt) it also holds everything `--resume` needs: their states, the
    loop's State and the RNGs; without them (best.pt) it stays the size of the weights.
    """
    if rank != 0:
        return
    blob = {**saved, "state_dict": net.state_dict(), "epoch": state.epoch, "best_metric": state.best_metric}
    if optimizer is not None:
        blob.update(optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), state=state.__dict__,
                    rng=_rng_state())
    write_atomic(path, lambda fh: torch.save(blob, fh))


def _load_checkpoint(path: Path, net, optimizer, scaler) -> State:
    if not path.is_file():
        raise CellcheckError(f"{path}: no checkpoint to resume from; run without --resume")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
        net.load_state_dict(blob["state_dict"])
        optimizer.load_state_dict(blob["optimizer"])
        scaler.load_state_dict(blob["scaler"])
    except (OSError, RuntimeError, KeyError, EOFError) as exc:
        raise CellcheckError(f"{path}: cannot resume from this checkpoint ({type(exc).__name__}); start a new run") from None
    _set_rng_state(blob["rng"])
    return State(**blob["state"])


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}


def _set_rng_state(rng: Mapping[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])


def _log(out: Path, rank: int, record: Mapping[str, Any]) -> None:
    if rank == 0:
        with (out / "metrics.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


def _plot_memory(out: Path) -> None:
    """memory.png: measured host PSS per role (and GPU memory) over time, each start a session of its own, with
    the latest start's predicted peaks as lines."""
    from cellcheck.memory.plot import plot_samples
    from cellcheck.memory.profiler import read_samples

    plan = latest_start_record(out, "memory_plan.json")  # the plan of the start that drew these samples
    host, gpu = {}, {}
    if plan:
        host = {"host RAM, job (predicted)": plan["ram"]["peak_bytes"]}
        gpu = {"GPU peak per rank (predicted)": plan["vram"]["peak_bytes"]}
    plot_samples(read_samples(out / "memory.jsonl"), out / "memory.png", host, gpu, title=f"{out.name}: training")


def join_process_group(timeout_s: int | None = None) -> tuple[int, int]:
    """(rank, world size); joins the process group under torchrun (gloo on CPU, nccl on GPUs).

    `timeout_s` bounds how long a rank waits in a collective (default: torch's, 10 min for NCCL).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s) if timeout_s else None
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=timeout)
    return (dist.get_rank() if world > 1 else 0), world


def leave_process_group(status: int, world: int, barrier: bool = False) -> int:
    """Leave the process group (every rank arrives here at the same decision) and return the exit status."""
    if world > 1 and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()
    return status


def _broadcast(value: Any) -> Any:
    if dist.is_initialized():
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]
    return value


def run_device(rank: int) -> torch.device:
    """The rank's device: its local GPU under torchrun (LOCAL_RANK), the CPU without CUDA."""
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def amp_dtype_for(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it (fp16 with a scaler otherwise) when the config asks for AMP; None on the CPU."""
    if not cfg.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _check_device_memory(cfg: TrainConfig, device: torch.device) -> None:
    """The node's GPU must have at least the memory the plan was made for."""
    from cellcheck.memory.gpus import gpu_profile

    have = torch.cuda.get_device_properties(device).total_memory
    want = gpu_profile(cfg.gpu).total_bytes
    if have < 0.97 * want:
        raise CellcheckError(f"this node's GPU has {have / 2**30:.1f} GiB, the plan assumed {cfg.gpu} "
                             f"({want / 2**30:.1f} GiB); rerun cellcheck gate with --gpu for this GPU")


def _slurm_mem(env: Mapping[str, str]) -> str | None:
    """SLURM exports --mem in MiB as SLURM_MEM_PER_NODE."""
    value = env.get("SLURM_MEM_PER_NODE")
    return f"{value}M" if value and value.isdigit() else None
