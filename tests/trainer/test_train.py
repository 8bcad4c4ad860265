"""The gated trainer end to end on generated data: refuses bad runs, trains, says so, records, resumes exactly.

Tiny on purpose: SegResNetDS at a 32^3 ROI, two steps an epoch, on the CPU.
"""

import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from cellcheck.classes import CLASS_NAMES, NUM_CLASSES
from cellcheck.config import validate_config
from trainer.data import LoadCased, intensity_rule, read_cases, split_fold
from trainer.infer import load_checkpoint_model, network_input, predict_to_files, read_image
from trainer.infer import sliding_window_probabilities
from cellcheck.models.losses import DeepSupervisionPartialLoss, PartialAnnotationLoss
from cellcheck.models.networks import build_network, outputs_as_list
from trainer.curves import epoch_records
from trainer.train import NonFiniteGuard, build_loss, train

#: TensorBoard is an optional extra (the dev install has it): the resume test checks its events when present.
TENSORBOARD = importlib.util.find_spec("tensorboard") is not None

BASE = {"model": "segresnet", "datalist": "datalist.json", "roi_size": [32, 32, 32], "batch_size": 2,
        "num_patches_per_image": 2, "num_epochs": 2, "smoke_test": True, "max_steps_per_epoch": 2,
        "num_workers": 0, "mem": "64G", "gpu": "l40s", "seed": 7, "network_width": 0.25}


def config(root: Path, run: str, **changes) -> Path:
    p = root / f"{run}.yaml"
    p.write_text(yaml.safe_dump({**BASE, "output_dir": f"runs/{run}", **changes}))
    return p


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(clean):
    """One finished run, shared by the tests that only read what it left (and what it said, on stdout)."""
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        status = train(config(clean, "trained"), env={})
    return status, clean / "runs" / "trained", said.getvalue()


def test_finished_run_leaves_its_record(trained):
    status, out, _ = trained
    assert status == 0
    for name in ("gate.json", "memory_plan.json", "metrics.jsonl", "memory.jsonl", "memory.png", "progress.png",
                 "last.pt", "best.pt"):
        assert (out / name).is_file(), name
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # every file renamed into place
    epochs = [r for r in lines_of(out / "metrics.jsonl") if "epoch" in r and "train_loss" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]  # counted from 1, as the run says them
    assert all(r["steps"] == 2 and r["train_loss"] > 0 for r in epochs)
    dice = epochs[-1]["val_dice"]
    assert dice and all(0.0 <= v <= 1.0 for v in dice.values())
    assert json.loads((out / "gate.json").read_text())["passed"] is True
    samples = lines_of(out / "memory.jsonl")
    assert samples[0]["event"] == "start" and all(s["total"]["pss_bytes"] > 0 for s in samples)
    plan = json.loads((out / "memory_plan.json").read_text())
    assert plan["vram"]["peak_bytes"] > 0 and plan["ram"]["peak_bytes"] > 0


def test_run_says_what_it_does(trained):
    """A first line (what runs where), one line per epoch, a last line (where everything is, with sizes)."""
    _, out, said = trained
    lines = said.splitlines()
    assert len(lines) == 4, said
    first, epochs, last = lines[0], lines[1:3], lines[3]
    assert first.startswith("cellcheck train: segresnet (") and "M parameters) on cpu, 1 rank" in first
    assert "7 training / 3 validation crops" in first and "2 epochs of at most 2 steps, batch 2 of 32x32x32" in first
    assert "loss partial; new run" in first and first.endswith(f"writing to {out}")
    records = [r for r in lines_of(out / "metrics.jsonl") if "train_loss" in r]
    for i, (line, record) in enumerate(zip(epochs, records)):
        assert line.startswith(f"epoch {i + 1}/2  loss {record['train_loss']:.4f}  skipped 0  "
                               f"val Dice {record['val_dice_mean']:.3f} (worst "), line
        assert re.search(r"  \d+\.\d s \+ \d+\.\d s validation  host \d+\.\d GiB$", line), line
    assert last.startswith("cellcheck train: finished epoch 2 of 2 in ") and "best val Dice" in last
    sizes = dict(re.findall(r"(best\.pt|last\.pt) (\d+\.\d [kMG]B)", last))
    assert set(sizes) == {"best.pt", "last.pt"}, last
    assert f"{out}: best.pt " in last and all(n in last for n in ("metrics.jsonl", "progress.png", "memory.png"))


def test_best_holds_what_inference_needs_and_last_what_resuming_needs(trained):
    """best.pt: weights, network config, class names, intensity rule, no optimizer; last.pt: all of it."""
    _, out, _ = trained
    best = torch.load(out / "best.pt", weights_only=False)
    last = torch.load(out / "last.pt", weights_only=False)
    assert {"model", "config", "class_names", "intensity", "state_dict", "epoch"} <= set(best)
    assert not {"optimizer", "scaler", "state", "rng"} & set(best)
    assert {"optimizer", "scaler", "state", "rng"} <= set(last)
    assert best["class_names"] == list(CLASS_NAMES) and best["intensity"]["dtype"] == "uint8"
    # AdamW keeps two moments per weight: the resume state is about three times the weights alone
    assert (out / "last.pt").stat().st_size > 2.5 * (out / "best.pt").stat().st_size
    model, cfg = load_checkpoint_model(out / "best.pt")
    assert cfg["model"] == "segresnet" and cfg["roi_size"] == [32, 32, 32]
    assert sum(p.numel() for p in model.parameters()) > 1e5


def test_progress_png_shows_the_whole_run(trained):
    """progress.png: a PNG of three panels (loss, Dice per class and mean, learning rate), redrawn each epoch."""
    import matplotlib.image as mpimg

    _, out, _ = trained
    image = mpimg.imread(out / "progress.png")
    assert image.shape[0] >= 800 and image.shape[1] >= 800  # 9 x 9 inches at 100 dpi
    history = epoch_records(out / "metrics.jsonl")
    assert [r["epoch"] for r in history] == [1, 2] and all(r["learning_rate"] == 2e-4 for r in history)


def test_second_run_is_refused_and_changes_nothing(trained, capsys):
    """The same config again without --resume: exit 1, one line naming --resume and a new output_dir."""
    _, out, _ = trained
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in out.iterdir()}
    metrics = (out / "metrics.jsonl").read_bytes()
    assert train(out.parent.parent / "trained.yaml", env={}) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "already holds a run" in captured.err, captured.err
    assert "--resume" in captured.err and "new output_dir" in captured.err
    assert {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in out.iterdir()} == before
    assert (out / "metrics.jsonl").read_bytes() == metrics


def test_defective_dataset_is_refused_before_training(defects_all, capsys):
    status = train(config(defects_all, "refused"), env={})
    out = defects_all / "runs" / "refused"
    assert status == 1
    assert json.loads((out / "gate.json").read_text())["passed"] is False
    assert sorted(p.name for p in out.iterdir()) == ["gate.json"]  # nothing written but the report
    assert "refused by the gate" in capsys.readouterr().err


@pytest.mark.parametrize("changes, env, check", [
    ({"smoke_test": False}, {}, "stale-config"),
    ({"loss": "dice_bce"}, {}, "loss-unmasked"),
    ({"loss": "dicece"}, {}, "config-invalid"),
    ({}, {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments=True"}, "alloc-conf-invalid"),
    ({"mem": "1G", "num_workers": 8}, {}, "ram-exceeds"),
])
def test_config_and_environment_failures_are_refused(clean, changes, env, check, capsys):
    run = f"refused-{check}"
    status = train(config(clean, run, **changes), env=env)
    assert status == 1
    assert check in capsys.readouterr().err
    assert sorted(p.name for p in (clean / "runs" / run).iterdir()) == ["gate.json"]


def test_missing_key_refused_without_output_dir(clean, capsys):
    p = clean / "nokey.yaml"
    p.write_text(yaml.safe_dump({k: v for k, v in BASE.items() if k != "roi_size"}))
    assert train(p, env={}) == 1
    err = capsys.readouterr().err
    assert "missing key 'roi_size'" in err and "missing key 'output_dir'" in err


def test_resume_continues_exactly_and_loses_nothing(clean, trained, capsys):
    """Two epochs in one go (the shared run), or one epoch, a refused restart, then --resume: the same
    weights, one record per epoch, the curves of the whole run (and TensorBoard's, when installed)."""
    cfg = config(clean, "split", tensorboard=TENSORBOARD)
    out = clean / "runs" / "split"
    assert train(cfg, {"num_epochs": 1}, resume=True, env={}) == 0  # --resume with nothing to resume: a new run
    assert "--resume: no checkpoint yet, starting at epoch 1" in capsys.readouterr().out
    first = (out / "metrics.jsonl").read_text()
    assert train(cfg, {"num_epochs": 2}, env={}) == 1  # no --resume: refused, nothing changed
    assert "already holds a run" in capsys.readouterr().err
    assert train(cfg, {"num_epochs": 2}, resume=True, env={}) == 0
    said = capsys.readouterr().out.splitlines()
    assert "resuming after epoch 1;" in said[0] and said[1].startswith("epoch 2/2  loss") and len(said) == 3
    assert (out / "metrics.jsonl").read_text().startswith(first)  # appended to, never rewritten
    assert [r["epoch"] for r in epoch_records(out / "metrics.jsonl")] == [1, 2]
    a = torch.load(trained[1] / "last.pt", weights_only=False)
    b = torch.load(out / "last.pt", weights_only=False)
    assert a["state"]["epoch"] == b["state"]["epoch"] == 2
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    if TENSORBOARD:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        steps = []
        for events in sorted((out / "tensorboard").glob("events.out.tfevents.*")):  # one file per start
            acc = EventAccumulator(str(events))
            acc.Reload()
            steps += [e.step for e in acc.Scalars("train/loss")]
            assert "val/dice_mean" in acc.Tags()["scalars"]
        assert sorted(steps) == [1, 2]


def test_tensorboard_without_the_package_is_one_line_and_writes_nothing(clean, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as in an install without the extra
    assert train(config(clean, "tb-missing", tensorboard=True), env={}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'cellcheck[tensorboard]'" in err, err
    assert not (clean / "runs" / "tb-missing").exists()


INTERRUPTED = dict(num_epochs=1, max_steps_per_epoch=None, num_patches_per_image=1, batch_size=1)


@pytest.fixture(scope="module")
def uninterrupted(clean):
    """The one-epoch run the interrupted ones must equal: its record and its last.pt."""
    assert train(config(clean, "preempt-reference", **INTERRUPTED), env={}) == 0
    out = clean / "runs" / "preempt-reference"
    return epoch_records(out / "metrics.jsonl"), torch.load(out / "last.pt", weights_only=False)


def interrupt(cfg: Path, out: Path, sig: signal.Signals, command: list[str]) -> subprocess.CompletedProcess:
    """Start a run, send `sig` once it trains (the profiler's file exists once the handlers are in place)."""
    proc = subprocess.Popen([*command, "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTORCH_CUDA_ALLOC_CONF": ""})
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "memory.jsonl").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_sigterm_checkpoints_and_resume_equals_uninterrupted(clean, uninterrupted):
    """Interrupted mid-epoch (SLURM's SIGTERM), then --resume: the same weights and the same epoch record as a run
    that was never interrupted, and one epoch numbering, counted from 1, in all it says and records (issue 23,
    item 5: it said "in epoch 2" on stdout, "at epoch 1" on stderr, wrote epoch 0, and lost the loss)."""
    cfg = config(clean, "preempt", **INTERRUPTED)
    out = clean / "runs" / "preempt"
    stopped = interrupt(cfg, out, signal.SIGTERM, [sys.executable, "-m", "trainer"])
    assert stopped.returncode == 0, stopped.stderr
    state = torch.load(out / "last.pt", weights_only=False)["state"]
    step = state["step_in_epoch"]
    assert state["epoch"] == 0 and step >= 1 and len(state["epoch_losses"]) == step
    assert f"SIGTERM: checkpoint saved in epoch 1 after step {step}; continue with --resume" in stopped.stderr
    assert "stopped by SIGTERM in epoch 1 (resumable)" in stopped.stdout
    [event] = [r for r in lines_of(out / "metrics.jsonl") if r.get("event") == "signal"]
    assert (event["epoch"], event["step_in_epoch"]) == (1, step)
    resumed = subprocess.run([sys.executable, "-m", "trainer", "--config", str(cfg), "--resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming epoch 1 after step {step};" in resumed.stdout and "\nepoch 1/1  loss " in resumed.stdout
    final = torch.load(out / "last.pt", weights_only=False)
    assert final["state"]["epoch"] == 1
    reference, weights = uninterrupted
    [record] = epoch_records(out / "metrics.jsonl")
    assert record["epoch"] == 1 and record["steps"] == reference[0]["steps"]  # the steps before the signal count
    assert record["train_loss"] == pytest.approx(reference[0]["train_loss"], rel=1e-6)  # and so does their loss
    for k, v in weights["state_dict"].items():
        assert torch.equal(v, final["state_dict"][k]), k
    from cellcheck.memory.plot import sessions
    from cellcheck.memory.profiler import read_samples

    assert len(sessions(read_samples(out / "memory.jsonl"))) == 2  # memory.png: two sessions, one after the other


def test_ctrl_c_checkpoints_exits_130_and_resumes(clean, uninterrupted):
    """Issue 23, item 6: Ctrl-C (SIGINT) printed 'Aborted!' and saved nothing; now it is SIGTERM's stop with the
    shell's status for an interrupt, and --resume finishes the run as if nothing had happened."""
    cfg = config(clean, "ctrl-c", **INTERRUPTED)
    out = clean / "runs" / "ctrl-c"
    cellcheck = str(Path(sys.executable).parent / "cellcheck")
    stopped = interrupt(cfg, out, signal.SIGINT, [cellcheck, "train"])
    assert stopped.returncode == 130, stopped.stderr
    assert "Aborted" not in stopped.stderr and "Traceback" not in stopped.stderr
    step = torch.load(out / "last.pt", weights_only=False)["state"]["step_in_epoch"]
    assert step >= 1 and f"SIGINT: checkpoint saved in epoch 1 after step {step}; continue with --resume" in stopped.stderr
    assert "stopped by SIGINT in epoch 1 (resumable)" in stopped.stdout
    rerun = subprocess.run([cellcheck, "train", "--config", str(cfg)], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 1 and "continue it with --resume" in rerun.stderr
    resumed = subprocess.run([cellcheck, "train", "--config", str(cfg), "--resume"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    reference, weights = uninterrupted
    assert [r["steps"] for r in epoch_records(out / "metrics.jsonl")] == [reference[0]["steps"]]
    final = torch.load(out / "last.pt", weights_only=False)
    for k, v in weights["state_dict"].items():
        assert torch.equal(v, final["state_dict"][k]), k


def _copy_of(trained, clean: Path, name: str) -> tuple[Path, Path]:
    """A private copy of the shared finished run (a run folder is a run wherever it lies) and its config."""
    out = clean / "runs" / name
    shutil.copytree(trained[1], out)
    return config(clean, name), out


def _snapshot(out: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in out.iterdir() if p.is_file()}


def test_a_refused_resume_replaces_no_record(clean, trained):
    """Issue 23, item 3: a --resume the gate refuses no longer writes its failed report over the run's gate.json:
    it is appended to gate.jsonl beside it, and nothing else changes."""
    from click.testing import CliRunner

    from cellcheck.cli import cli

    cfg, out = _copy_of(trained, clean, "refused-resume")
    before = _snapshot(out)
    r = CliRunner().invoke(cli, ["train", "--config", str(cfg), "--resume", "--set", "smoke_test=false"])
    assert r.exit_code == 1 and "stale-config" in r.stderr and f"report in {out / 'gate.jsonl'}" in r.stderr
    after = _snapshot(out)
    assert {k: v for k, v in after.items() if k != "gate.jsonl"} == before
    assert json.loads((out / "gate.json").read_text())["passed"] is True  # the start's report, as it was
    [line] = lines_of(out / "gate.jsonl")
    assert line["record"]["passed"] is False and line["time"] > 0


def test_a_resume_with_nothing_to_do_changes_no_record(clean, trained):
    """Issue 23, item 3: a --resume of a finished run rewrote memory_plan.json and memory.png (and sampled into
    memory.jsonl); now it appends its gate report and plan to their logs and touches nothing else."""
    from click.testing import CliRunner

    from cellcheck.cli import cli

    cfg, out = _copy_of(trained, clean, "noop-resume")
    before = _snapshot(out)
    r = CliRunner().invoke(cli, ["train", "--config", str(cfg), "--resume"])
    assert r.exit_code == 0 and "nothing to do: the run is already at epoch 2 of 2" in r.stdout, r.output
    after = _snapshot(out)
    assert {k: v for k, v in after.items() if k not in ("gate.jsonl", "memory_plan.jsonl")} == before
    assert [line["record"]["passed"] for line in lines_of(out / "gate.jsonl")] == [True]
    assert len(lines_of(out / "memory_plan.jsonl")) == 1


def test_ddp_two_ranks_on_cpu(clean):
    """torchrun with two ranks (gloo): both train, rank 0 writes the record."""
    cfg = config(clean, "ddp", num_epochs=1)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
                           "--master_port=29561", "-m", "trainer", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = clean / "runs" / "ddp"
    assert (out / "last.pt").is_file()
    assert json.loads((out / "memory_plan.json").read_text())["vram"]["gpus"] == 2


@pytest.mark.parametrize("model, roi", [("segresnet", 32), ("dints", 32), ("swinunetr", 64)])
def test_each_network_learns_a_repeated_batch(model, roi):
    """A few steps on one batch with the masked loss: the loss goes down for all three networks."""
    torch.manual_seed(0)
    net = build_network(model, 14, roi_size=(roi,) * 3)
    loss_fn = DeepSupervisionPartialLoss(PartialAnnotationLoss(num_classes=14))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4)
    image = torch.rand(1, 1, roi, roi, roi)
    label = (torch.arange(roi).view(roi, 1, 1) // (roi // 4) + 1).expand(roi, roi, roi)[None, None].to(torch.uint8)
    annotated = torch.zeros(1, 14, dtype=torch.bool)
    annotated[0, :4] = True
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = loss_fn(outputs_as_list(net(image)), label, annotated)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0], losses


def test_nonfinite_guard_skips_then_stops():
    guard = NonFiniteGuard(limit=3)
    guard.record(True)
    guard.record(False)
    guard.record(False)
    assert not guard.exhausted and guard.in_a_row == 2
    guard.record(True)
    assert guard.in_a_row == 0
    for _ in range(3):
        guard.record(False)
    assert guard.exhausted and guard.total == 5


def _as_dtype(src: Path, dst: Path, dtype: str) -> Path:
    """A copy of a dataset whose images hold the same content stored as uint16 (x 257) or int16 (x 256 - 32768)."""
    shutil.copytree(src, dst)
    for path in (dst / "imagesTr").glob("*.nii.gz"):
        img = nib.load(str(path))
        v = np.asanyarray(img.dataobj).astype(np.int32)
        data = (v * 257).astype(np.uint16) if dtype == "uint16" else (v * 256 - 32768).astype(np.int16)
        nib.save(nib.Nifti1Image(data, img.affine), str(path))
    return dst


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
def test_training_and_inference_give_the_network_the_same_input(clean, trained, tmp_path, dtype):
    """One intensity rule: the trainer's loader and inference (with the rule the checkpoint stores) agree."""
    if dtype == "uint8":
        root, ckpt = clean, trained[1] / "last.pt"
    else:
        root = _as_dtype(clean, tmp_path / "data", dtype)
        # fold 7 holds no crop: no validation pass, which this test does not need (the other runs cover it)
        assert train(config(root, "dtype", num_epochs=1, max_steps_per_epoch=1, fold=7), env={}) == 0
        ckpt = root / "runs" / "dtype" / "last.pt"
    net, cfg = load_checkpoint_model(ckpt)
    assert cfg["intensity"].dtype == dtype  # the rule travels with the weights
    cases = read_cases(root / "datalist.json", None, NUM_CLASSES)
    case = cases[0]
    trained_on = LoadCased(intensity_rule(cases), NUM_CLASSES)(case.as_dict())["image"][None]
    inferred_on = network_input(read_image(case.image), cfg["intensity"])
    assert torch.equal(trained_on, inferred_on)
    assert 0.0 <= float(inferred_on.min()) and float(inferred_on.max()) <= 1.0
    uint8_cases = read_cases(clean / "datalist.json", None, NUM_CLASSES)
    uint8_input = LoadCased(intensity_rule(uint8_cases), NUM_CLASSES)(uint8_cases[0].as_dict())["image"]
    np.testing.assert_allclose(inferred_on[0].numpy(), uint8_input.numpy(), atol=0.005)  # same content, same input
    written = predict_to_files([ckpt], [case.image], tmp_path / "out")
    expected = sliding_window_probabilities([net], trained_on, cfg["roi_size"])
    np.testing.assert_allclose(np.asarray(nib.load(str(written[0])).dataobj), np.moveaxis(expected.numpy(), 0, -1),
                               atol=1e-6)


def test_loss_follows_the_config(clean):
    """Every loss key acts: masking, batch Dice, squared_pred, class weights (a list or inverse frequency)."""
    cases, _ = split_fold(read_cases(clean / "datalist.json", None, NUM_CLASSES), 0)
    raw = {**BASE, "output_dir": "x"}
    assert validate_config(raw).config is not None
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, NUM_CLASSES, 8, 8, 8, generator=gen)
    labels = torch.randint(0, NUM_CLASSES + 1, (2, 1, 8, 8, 8), generator=gen)
    mask = torch.zeros(2, NUM_CLASSES, dtype=torch.bool)
    mask[0, :3], mask[1, 2:6] = True, True

    def value(**changes) -> float:
        annotated = np.stack([c.annotated for c in cases])
        return float(build_loss(validate_config({**raw, **changes}).config, annotated)([logits], labels, mask))

    default = value()
    for changes in ({"loss": "dice_bce"}, {"batch_dice": True}, {"squared_pred": True},
                    {"class_weights": "inverse_frequency"}, {"class_weights": [2.0] * NUM_CLASSES},
                    {"lambda_bce": 0.0}):
        assert value(**changes) != pytest.approx(default, abs=1e-6), changes
    assert value(class_weights=[1.0] * NUM_CLASSES) == pytest.approx(default)
