"""cellcheck.models.networks: shapes, deep supervision, gradients, ROI rules, the fixed DiNTS, FakeTensorMode."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

from cellcheck.models.networks import (
    DINTS_CODE_A,
    DINTS_CODE_C,
    MODELS,
    build_network,
    check_roi,
    dints_node_activation,
    outputs_as_list,
    roi_multiple,
)

#: Smallest valid cubic ROI of each model (twice its multiple): what a CPU test can afford.
SMALL_ROI = {"segresnet": (32, 48, 32), "swinunetr": (64, 64, 64), "dints": (48, 32, 32)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nets() -> dict[str, torch.nn.Module]:
    """One network per model, built once (seeded); tests that change parameters build their own."""
    torch.manual_seed(0)
    return {m: build_network(m, roi_size=SMALL_ROI[m]) for m in MODELS}


@pytest.mark.parametrize("model", MODELS)
def test_eval_logits_have_roi_shape(nets, model):
    net = nets[model].eval()
    x = torch.rand(1, 1, *SMALL_ROI[model])
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, 14, *SMALL_ROI[model]) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("model", ["segresnet", "dints"])  # swinunetr (20 s on a busy CPU): fake-tensor test below
def test_train_backward_reaches_every_trainable_parameter(nets, model):
    net = nets[model].train()
    x = torch.rand(1, 1, *SMALL_ROI[model])
    outs = outputs_as_list(net(x))
    sum(o.float().mean() for o in outs).backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    net.zero_grad(set_to_none=True)
    assert missing == []


def test_segresnet_deep_supervision_list_full_resolution_first(nets):
    net = nets["segresnet"].train()
    roi = SMALL_ROI["segresnet"]
    with torch.no_grad():
        outs = net(torch.rand(1, 1, *roi))
    assert isinstance(outs, list) and len(outs) == 4
    assert outs[0].shape == (1, 14, *roi)
    for level, o in enumerate(outs[1:], start=1):
        assert o.shape == (1, 14, *(r // 2**level for r in roi))


def test_segresnet_without_deep_supervision_returns_one_tensor():
    net = build_network("segresnet", roi_size=(32, 32, 32), deep_supervision=False).train()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 32, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 14, 32, 32, 32)


def test_parameter_counts(nets):
    counts = {m: sum(p.numel() for p in net.parameters()) for m, net in nets.items()}
    assert counts["segresnet"] > 1e6 and counts["swinunetr"] > 1e6 and counts["dints"] > 1e6
    # DiNTS: only the 1/16 stem is frozen (the template architecture never reads it): 3.5 M of 152 M
    dints = nets["dints"]
    frozen = [n for n, p in dints.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("stem_down.3.") for n in frozen)


def test_roi_multiples():
    assert [roi_multiple(m) for m in MODELS] == [16, 32, 16]
    with pytest.raises(ValueError, match="unknown model"):
        roi_multiple("unet")


@pytest.mark.parametrize(
    ("model", "roi"),
    [("swinunetr", (96, 96, 80)), ("swinunetr", (32, 32, 32)), ("segresnet", (96, 96, 40)),
     ("segresnet", (16, 16, 16)), ("dints", (96, 100, 96)), ("dints", (96, 96))],
)
def test_bad_roi_raises_value_error_naming_roi_and_rule(model, roi):
    with pytest.raises(ValueError) as err:
        build_network(model, roi_size=roi)
    msg = str(err.value)
    assert str(list(roi)) in msg and model in msg
    if len(roi) == 3:
        assert f"multiple of {roi_multiple(model)}" in msg


def test_check_roi_accepts_valid():
    assert check_roi("swinunetr", [64, 96, 128]) == (64, 96, 128)
    assert check_roi("dints", (48, 32, 80)) == (48, 32, 80)


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'unet'"):
        build_network("unet")


def test_outputs_as_list():
    t = torch.zeros(1, 14, 4, 4, 4)
    assert outputs_as_list(t)[0] is t
    assert outputs_as_list((t, t[..., :2, :2, :2]))[1].shape[-1] == 2
    with pytest.raises(TypeError):
        outputs_as_list([])
    with pytest.raises(TypeError):
        outputs_as_list({"a": t})  # type: ignore[arg-type]


def test_dints_node_activation_matches_the_template_checkpoint():
    # node_a stored beside code_a/code_c in the Auto3DSeg dints template's scripts/arch_code.pth
    expected = [[1, 1, 1, 0]] + [[1, 1, 1, 1]] * 11 + [[1, 0, 1, 1]]
    assert dints_node_activation(DINTS_CODE_A) == [[bool(v) for v in row] for row in expected]


def test_static_dints_equals_monai_dints_with_the_same_weights(nets):
    from monai.networks.nets.dints import DiNTS, TopologyInstance

    code_a = np.array([[float(c) for c in row] for row in DINTS_CODE_A])
    code_c = np.array([[int(c) for c in row] for row in DINTS_CODE_C])
    with contextlib.redirect_stdout(io.StringIO()):
        space = TopologyInstance(arch_code=[code_a, code_c], channel_mul=1.0, num_blocks=12, num_depths=4)
    node_a = np.array(dints_node_activation(DINTS_CODE_A), dtype=np.int64)
    ref = DiNTS(space, in_channels=1, num_classes=14, use_downsample=True, node_a=node_a)
    ref.load_state_dict(nets["dints"].state_dict())  # same keys: checkpoints are interchangeable
    x = torch.rand(1, 1, *SMALL_ROI["dints"])
    with torch.no_grad():
        assert torch.equal(nets["dints"].eval()(x), ref.eval()(x))


def _fakeify(net: torch.nn.Module, mode: FakeTensorMode) -> None:
    """Swap every parameter and buffer for a fake tensor of the same shape (as the memory model does)."""
    for sub in net.modules():
        for name, p in list(sub._parameters.items()):
            if p is not None:
                sub._parameters[name] = torch.nn.Parameter(mode.from_tensor(p.detach()), requires_grad=p.requires_grad)
        for name, b in list(sub._buffers.items()):
            if b is not None:
                sub._buffers[name] = mode.from_tensor(b)


@pytest.mark.parametrize("model", MODELS)
def test_forward_and_backward_under_fake_tensor_mode(model):
    """Also the gradient-coverage check of swinunetr: the autograd graph is the same as with real tensors."""
    roi = SMALL_ROI[model]
    net = build_network(model, roi_size=roi).train()
    mode = FakeTensorMode()  # allow_non_fake_inputs=False: a real tensor read in forward would fail
    _fakeify(net, mode)
    with mode:
        outs = outputs_as_list(net(torch.empty(2, 1, *roi)))
        sum(o.float().mean() for o in outs).backward()
    assert isinstance(outs[0], FakeTensor) and outs[0].shape == (2, 14, *roi)
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
