"""A run's time from a probe's timings: the schedule's arithmetic, data-bound or not, SLURM's --time."""

import pytest

from cellcheck.forecast import Schedule, Timings, forecast, human, slurm_time

SCHEDULE = Schedule(train_crops=30, crops_per_batch=1, batch_size=2, patches_per_crop=2, num_epochs=4,
                    epochs_per_validation=2, validation_windows=40, workers=2)


def timings(**changes) -> Timings:
    base = dict(start_s=10.0, s_per_batch=0.1, s_per_step_fed=0.5, s_per_step_network=0.45, validation_s=2.0,
                validation_windows_probed=8, validation_warmup_s=1.0, gpu=True)
    return Timings(**{**base, **changes})


def test_a_network_bound_run():
    fc = forecast(SCHEDULE, timings())
    assert fc.steps_per_epoch == 30 and fc.s_per_step == 0.5 and fc.epoch_s == pytest.approx(15.0)
    assert fc.validation_s == pytest.approx(10.0)  # 2 s for 8 windows, 40 windows in all
    # 4 epochs, validations after epochs 2 and 4, the first window's warm-up once
    assert fc.first_validation_s == pytest.approx(10 + 2 * 15 + 10 + 1)
    assert fc.total_s == pytest.approx(10 + 4 * 15 + 2 * 10 + 1)
    assert fc.data_bound is False and fc.workers_needed == 1


def test_a_data_bound_run_says_the_workers_that_would_keep_up():
    fc = forecast(SCHEDULE, timings(s_per_batch=1.35, s_per_step_fed=0.6))
    assert fc.data_bound is True and fc.s_per_step == 1.35  # the loader's pace, not the fed steps' of a full queue
    assert fc.workers_needed == 6  # 2 workers x 1.35 s / 0.45 s
    assert fc.gpu_idle_fraction == pytest.approx(1 - 0.45 / 1.35)


def test_cpu_timings_for_a_gpu_job_keep_only_the_loaders_bound():
    fc = forecast(SCHEDULE, timings(gpu=False), for_gpu_job=True)
    assert fc.loader_only and fc.s_per_step == 0.1 and fc.data_bound is None and fc.workers_needed is None


def test_ranks_split_the_epoch_and_the_validation():
    two = forecast(Schedule(**{**SCHEDULE.__dict__, "ranks": 2}), timings())
    assert two.steps_per_epoch == 15 and two.validation_s == pytest.approx(5.0)


def test_slurm_time_adds_the_margin_in_whole_minutes():
    assert slurm_time(3600) == "01:15:00" and slurm_time(30) == "00:10:00" and slurm_time(86400) == "1-06:00:00"
    assert human(3 * 3600 + 12 * 60) == "3 h 12 min" and human(845) == "14 min 5 s"
