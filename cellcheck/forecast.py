"""How long a run will take, from a probe's timings: steps per epoch, seconds per step, validations, data-bound or not.

A step takes what the measured steps fed by the loader took (the loader and the network ran together,
as they will); the network alone and the loader alone say which of the two bounds it. The loader's
rate is measured with the config's workers; it grows about in proportion to them (while cores last), so
the run is data-bound when the loader's seconds per step exceed the network's, and the workers it would
take not to be are the workers times that ratio. Without a GPU on the probing machine the network
time is the CPU's, so for a GPU job only the loader's bound stands (`loader_only`). Validation scales
from the probed crop by its sliding windows (a crop smaller than the ROI still costs one window), plus
the first window's warm-up once; ranks split the crops of an epoch and of a validation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Schedule:
    """What the run does: crops, batches, epochs, how often it validates, on how many ranks."""

    train_crops: int
    crops_per_batch: int
    batch_size: int  # patches per optimizer step
    patches_per_crop: int
    num_epochs: int
    epochs_per_validation: int
    validation_windows: int  # sliding windows over every validation crop
    ranks: int = 1
    max_steps_per_epoch: int | None = None
    workers: int = 0

    @property
    def batches_per_epoch(self) -> int:
        """Loader batches of one rank per epoch (DistributedSampler pads every rank's share to one length)."""
        per_rank = -(-self.train_crops // self.ranks)
        return -(-per_rank // self.crops_per_batch)

    @property
    def steps_per_epoch(self) -> int:
        patches = self.crops_per_batch * self.patches_per_crop
        steps = self.batches_per_epoch * -(-patches // self.batch_size)
        return min(steps, self.max_steps_per_epoch) if self.max_steps_per_epoch else steps

    @property
    def validations(self) -> int:
        every = max(1, self.epochs_per_validation)
        return self.num_epochs // every + (1 if self.num_epochs % every else 0)


@dataclass(frozen=True)
class Timings:
    """A probe's measurements (seconds)."""

    start_s: float  # opening the data and building the network, before the first step
    s_per_batch: float  # the loader alone, one batch, once running
    s_per_step_fed: float  # a training step fed by the loader, waiting for its batch included
    s_per_step_network: float  # the network alone
    validation_s: float  # one crop of `validation_windows_probed` windows, warmed up
    validation_windows_probed: int
    validation_warmup_s: float  # the first window through the network, paid once per run
    gpu: bool  # measured on a GPU (else the network times are a CPU's)


@dataclass
class Forecast:
    steps_per_epoch: int
    s_per_step: float
    epoch_s: float
    validation_s: float
    first_validation_s: float
    total_s: float
    loader_s_per_step: float
    network_s_per_step: float
    data_bound: bool | None  # None: not known without a GPU
    gpu_idle_fraction: float | None
    workers_needed: int | None
    loader_only: bool  # the step time is the loader's bound alone (no GPU measured)

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def forecast(schedule: Schedule, t: Timings, *, for_gpu_job: bool = False) -> Forecast:
    """The run's time. `for_gpu_job` with CPU timings: the network time is unknown, the loader's bound stands."""
    steps_per_batch = max(1, -(-schedule.crops_per_batch * schedule.patches_per_crop // schedule.batch_size))
    loader_step = t.s_per_batch / steps_per_batch  # measured with the config's workers side by side
    loader_only = for_gpu_job and not t.gpu
    if loader_only:
        step, network, bound, idle, needed = loader_step, float("nan"), None, None, None
    else:
        network = t.s_per_step_network
        step = max(t.s_per_step_fed, network, loader_step)
        bound = loader_step > network * 1.05
        idle = max(0.0, 1.0 - network / step) if t.gpu else None
        # the loader's rate grows with its workers (while cores last): enough of them to keep up with the network
        needed = max(1, math.ceil(max(1, schedule.workers) * loader_step / network)) if network > 0 else None
    epoch = schedule.steps_per_epoch * step
    validation = t.validation_s * schedule.validation_windows / max(t.validation_windows_probed, 1) / schedule.ranks
    warmup = t.validation_warmup_s if schedule.validations else 0.0
    first = t.start_s + max(1, schedule.epochs_per_validation) * epoch + validation + warmup
    total = t.start_s + schedule.num_epochs * epoch + schedule.validations * validation + warmup
    return Forecast(schedule.steps_per_epoch, step, epoch, validation, min(first, total), total, loader_step, network,
                    bound, idle, needed, loader_only)


def human(seconds: float) -> str:
    """3 h 12 min, 14 min 5 s, 42 s."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"


def slurm_time(seconds: float, margin: float = 0.25) -> str:
    """SLURM's --time (D-HH:MM:SS) for `seconds` plus `margin`, in whole minutes, at least 10 minutes."""
    minutes = max(10, math.ceil(seconds * (1 + margin) / 60))
    days, rest = divmod(minutes, 24 * 60)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00" if days else f"{rest // 60:02d}:{rest % 60:02d}:00"
