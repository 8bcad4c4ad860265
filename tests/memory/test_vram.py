"""The VRAM model: one real training step of each template network under fake tensors, small ROIs.

Structural properties only (no GPU here): the tracked bytes of parameters, gradients and optimizer
state are exactly what the parameter count implies, activations grow with the batch, AMP saves
memory, and the modelled CUDA costs and the batch search behave.
"""

import pytest

from cellcheck.errors import CellcheckError
from cellcheck.memory import vram
from cellcheck.memory.gpus import MiB, gpu_profile

ROI32, ROI64 = (32, 32, 32), (64, 64, 64)


@pytest.fixture(scope="module")
def steps():
    """Fake training steps, computed once per module (each costs about a second)."""
    cache = {}

    def get(model, roi, batch, amp, optimizer=None):
        key = (model, roi, batch, amp, optimizer)
        if key not in cache:
            cache[key] = vram.track_step(model, roi, batch, amp, optimizer)
        return cache[key]

    return get


def test_fp32_adamw_holds_four_copies_of_the_parameters(steps):
    step = steps("segresnet", ROI32, 1, None, "adamw")
    n = step.n_params
    assert n == 87_170_008  # SegResNetDS(32, blocks 1-2-2-4-4, dsdepth 4, 14 outputs)
    before = step.before_optimizer
    held = before["Parameter"] + before["Gradient"] + before["Optstate"]
    assert held == pytest.approx(4 * n * 4, rel=1e-3)  # weights, grads, exp_avg, exp_avg_sq: 4 bytes each
    assert step.after_step["Optstate"] == pytest.approx(2 * n * 4, rel=1e-3)
    assert step.after_step.get("Gradient", 0) == 0  # zero_grad(set_to_none=True)
    assert step.peak_bytes >= held


def test_sgd_momentum_holds_one_copy(steps):
    step = steps("dints", ROI32, 1, "bf16")  # the DiNTS template's optimizer: SGD, momentum 0.9
    assert step.optimizer == "sgd"
    assert step.after_step["Optstate"] == pytest.approx(4 * step.n_params, rel=1e-3)
    assert step.after_step["Parameter"] == pytest.approx(4 * step.n_params, rel=1e-3)


def test_dints_runs_with_its_topology_as_python_values(steps):
    step = steps("dints", ROI32, 1, "bf16")
    assert step.n_params > 100_000_000  # dense 12-block, 4-depth space, conv_3x3x3 on every path
    assert step.phase_peaks["forward"] > step.before_optimizer["Parameter"]


def test_activation_memory_grows_linearly_with_the_batch(steps):
    peaks = [steps("segresnet", ROI64, b, "bf16").phase_peaks["backward"] for b in (1, 2, 3)]
    assert peaks[0] < peaks[1] < peaks[2]
    assert peaks[2] - peaks[1] == pytest.approx(peaks[1] - peaks[0], rel=0.2)


def test_amp_needs_less_than_fp32(steps):
    for model in ("segresnet", "swinunetr"):
        amp, fp32 = steps(model, ROI64, 1, "bf16"), steps(model, ROI64, 1, None)
        assert amp.phase_peaks["backward"] < fp32.phase_peaks["backward"], model
        assert amp.breakdown_at_peak["Activation"] < fp32.breakdown_at_peak["Activation"], model


def test_peak_covers_weights_gradients_and_state(steps):
    for step in (steps("swinunetr", ROI64, 1, "bf16"), steps("segresnet", ROI64, 2, "bf16")):
        state = step.before_optimizer
        assert step.peak_bytes >= state["Parameter"] + state.get("Gradient", 0) + state["Optstate"]
        assert step.segment_peak_bytes >= step.peak_bytes  # 2 MiB segments only add


def test_block_and_segment_rounding_follow_the_caching_allocator():
    assert vram.block_bytes(1) == 512 and vram.block_bytes(512) == 512 and vram.block_bytes(513) == 1024
    assert vram.segment_bytes(1000) == 1024  # small requests share 2 MiB segments
    assert vram.segment_bytes(3 * MiB + 1) == 4 * MiB


def test_card_bill_adds_cuda_costs_and_ddp_buckets(steps):
    step = steps("segresnet", ROI64, 1, "bf16")
    one = vram.estimate(step, gpu_profile("l40s"), gpus=1)
    two = vram.estimate(step, gpu_profile("l40s"), gpus=2)
    assert one.breakdown["cuda_context"] == vram.CUDA_CONTEXT_BYTES
    assert one.breakdown["cudnn_workspace"] >= vram.CUDNN_WORKSPACE_FLOOR_BYTES
    assert one.peak_bytes == sum(one.breakdown.values()) > step.peak_bytes
    assert two.breakdown["ddp_buckets"] == pytest.approx(4 * step.n_params, rel=1e-3)
    assert one.fits and not vram.estimate(step, gpu_profile(mem_mib=1024)).fits


def test_max_batch_size_is_the_largest_that_fits(steps):
    known = {b: vram.estimate(steps("segresnet", ROI64, b, "bf16"), gpu_profile("l40s")) for b in (1, 2, 3)}
    # a card that holds batch 3 with a little to spare, but not batch 4
    card = gpu_profile(mem_mib=(known[3].peak_bytes + 30 * MiB) / MiB)
    known = {b: vram.estimate(e.step, card) for b, e in known.items()}
    found = vram.max_batch_size("segresnet", ROI64, card, amp="bf16", known=known)
    assert found.max_batch_size == 3
    assert found.at(3).fits and not found.at(4).fits
    assert vram.max_batch_size("segresnet", ROI64, gpu_profile(mem_mib=512), amp="bf16",
                               known={1: vram.estimate(known[1].step, gpu_profile(mem_mib=512))}).max_batch_size == 0


def test_bad_requests_are_user_errors():
    with pytest.raises(CellcheckError, match="unknown model"):
        vram.track_step("unet", ROI32)
    with pytest.raises(CellcheckError, match="multiple of 16"):
        vram.track_step("segresnet", (40, 40, 40))
    with pytest.raises(CellcheckError, match="at least 64"):
        vram.track_step("swinunetr", ROI32)
