"""`cellcheck predict` / `cellcheck profile` through click's CliRunner, on a dataset from the fixture generator."""

import json
import sys

import pytest
import yaml
from click.testing import CliRunner

from cellcheck.cli import cli
from cellcheck.memory.predict import predict

FAST = ["--model", "segresnet", "--roi", "32,32,32", "--format", "json"]  # small ROI: a fake step takes ~1 s


@pytest.fixture(scope="module")
def datalist(tmp_path_factory):
    from fixtures import make_dataset

    root = tmp_path_factory.mktemp("predict") / "data"
    make_dataset(root, seed=1, defects="none")
    return root / "datalist.json"


def run(*args):
    return CliRunner().invoke(cli, ["predict", *(str(a) for a in args)])


def test_json_has_the_design_contract_and_exit_0_when_it_fits(datalist):
    res = run(datalist, *FAST, "--gpu", "L40S", "--gpus", "2")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["gpu"] == {"name": "L40S", "total_bytes": 48305799168}
    assert {"batch_size", "num_epochs", "roi_size"} <= set(out["auto_scale"])
    assert {"peak_bytes", "fits", "max_batch_size"} <= set(out["vram"])
    assert {"peak_bytes", "per_rank_bytes", "per_worker_bytes", "slurm_mem"} <= set(out["ram"])
    assert out["vram"]["fits"] is True and out["vram"]["max_batch_size"] >= out["vram"]["batch_size"]
    assert out["vram"]["roi_size"] == [32, 32, 32] and out["vram"]["breakdown"]["ddp_buckets"] > 0
    assert out["dataset"]["n_cases"] > 0 and out["ram"]["slurm_mem"].endswith("G")


def test_exit_1_when_the_node_memory_is_too_small(datalist):
    res = run(datalist, *FAST, "--no-max-batch", "--mem", "1G", "--one-hot")
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["ram"]["fits"] is False and out["vram"]["fits"] is True and out["vram"]["max_batch_size"] is None


def test_exit_1_when_the_gpu_is_too_small(datalist):
    res = run(datalist, *FAST, "--no-max-batch", "--gpu-mem", "1500M")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["vram"]["fits"] is False


@pytest.mark.parametrize(
    "args, message",
    [(["--gpu", "tpu-v4"], "unknown GPU"), (["--roi", "40,40,40"], "multiple of 16"), (["--mem", "lots"], "--mem"),
     (["--worker-base", "some"], "--worker-base")],
)
def test_bad_input_is_one_line_and_exit_2(datalist, args, message):
    res = run(datalist, *FAST, "--no-max-batch", *args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "Traceback" not in res.output


def test_measured_process_bases_replace_the_assumed_ones(datalist):
    """A node's measured idle rank and worker (from cellcheck profile) feed the RAM plan, per rank and worker."""
    assumed = json.loads(run(datalist, *FAST, "--no-max-batch", "--gpus", "2", "--workers", "4").stdout)["ram"]
    res = run(datalist, *FAST, "--no-max-batch", "--gpus", "2", "--workers", "4", "--rank-base", "1G",
              "--worker-base", "100M")
    assert res.exit_code == 0, res.output
    measured = json.loads(res.stdout)["ram"]
    assert measured["breakdown"]["rank_base"] == 2 * 2**30 and measured["breakdown"]["worker_base"] == 8 * 100 * 2**20
    assert measured["breakdown"]["batches_in_flight"] == assumed["breakdown"]["batches_in_flight"]
    assert assumed["peak_bytes"] - measured["peak_bytes"] == (
        assumed["breakdown"]["rank_base"] - 2 * 2**30 + assumed["breakdown"]["worker_base"] - 8 * 100 * 2**20)


def test_trainer_chain_plans_patches_of_the_roi(datalist):
    """--chain trainer: finished samples are the patches (uint8 label), the loader batch is batch // patches."""
    res = run(datalist, *FAST, "--no-max-batch", "--chain", "trainer", "--patches", "2", "--batch", "4")
    assert res.exit_code == 0, res.output
    ram = json.loads(res.stdout)["ram"]
    assert ram["config"]["chain"] == "trainer" and ram["config"]["batch"] == 2
    assert ram["sample"]["out_bytes"] == 5 * 2 * 32**3  # FAST's 32^3 ROI, float32 image + uint8 label
    res = run(datalist, *FAST, "--no-max-batch", "--chain", "trainer", "--one-hot")
    assert res.exit_code == 2 and "one-hot" in res.stderr and "Traceback" not in res.output


def test_missing_datalist_is_exit_2(tmp_path):
    res = run(tmp_path / "nope.json", *FAST)
    assert res.exit_code == 2 and "no such file" in res.stderr


def test_stale_bundle_values_become_findings(datalist, tmp_path):
    bundle = tmp_path / "segresnet_0"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "hyper_parameters.yaml").write_text(yaml.safe_dump(
        {"num_images_per_batch": 1, "batch_size": "@num_images_per_batch", "num_epochs": 2,
         "roi_size": [224, 224, 144], "auto_scale_allowed": True, "auto_scale_batch": True}))
    res = run(datalist, *FAST, "--no-max-batch", "--bundle", bundle)
    assert res.exit_code == 0, res.output
    findings = json.loads(res.stdout)["findings"]
    assert {f["details"]["key"] for f in findings} >= {"num_epochs", "num_images_per_batch"}
    assert all(f["check"] == "stale-config" and f["severity"] == "warning" for f in findings)


def test_text_format_is_a_short_table(datalist):
    res = run(datalist, "--model", "segresnet", "--roi", "32,32,32", "--no-max-batch", "--format", "text")
    assert res.exit_code == 0
    assert "Auto3DSeg would choose" in res.stdout and "--mem=" in res.stdout and "fits" in res.stdout


def test_library_predict_from_stats_matches_the_field_auto_scale():
    out = predict({"n_cases": 198, "mean_shape": [393, 402, 418], "spacing": [8, 8, 8]}, "dints", "l40s",
                  roi=[32, 32, 32], batch=1, search_max_batch=False, gpus=2, one_hot=True, mem="200G")
    assert out["auto_scale"]["batch_size"] == 13 and out["auto_scale"]["num_patches_per_image"] == 26
    assert out["ram"]["fits"] is False and out["fits"] is False  # the field's 200G OOM


def test_profile_runs_the_command_and_writes_json_lines(tmp_path):
    out, summary = tmp_path / "memory.jsonl", tmp_path / "summary.json"
    res = CliRunner().invoke(cli, ["profile", "--output", str(out), "--interval", "0.05", "--summary-json", str(summary),
                                               "--", sys.executable, "-c", "raise SystemExit(4)"])
    assert res.exit_code == 4  # the command's own status
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and all(r["processes"][0]["role"] == "main" for r in records if r["processes"])
    assert "peak PSS of the process tree" in res.stderr
    assert json.loads(summary.read_text())["samples"] == len(records)


def test_profile_plot_draws_a_png_from_a_record(tmp_path):
    out = tmp_path / "memory.jsonl"
    CliRunner().invoke(cli, ["profile", "-o", str(out), "--interval", "0.05", "--", sys.executable, "-c",
                                         "import time; b = bytearray(50 * 2**20); time.sleep(0.3)"])
    res = CliRunner().invoke(cli, ["profile", "plot", str(out), "-o", str(tmp_path / "mem.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "mem.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_plot_refuses_a_file_that_is_not_a_record(tmp_path):
    bad = tmp_path / "metrics.jsonl"
    bad.write_text('{"epoch": 0}\n')
    res = CliRunner().invoke(cli, ["profile", "plot", str(bad), "-o", str(tmp_path / "mem.png")])
    assert res.exit_code == 2 and "no memory samples" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "mem.png").exists()


DINTS = ["--model", "dints", "--roi", "32,32,32", "--batch", "1", "--no-max-batch", "--format", "json"]


def test_dints_follows_its_template_chain_and_reports_worst_and_typical(datalist):
    """DiNTS by default: the template's own transforms (int64 label expansion), the worst case over the crops."""
    res = run(datalist, *DINTS, "--gpus", "2", "--mem", "64G", "--epochs", "50")
    assert res.exit_code == 0, res.output
    ram = json.loads(res.stdout)["ram"]
    assert ram["config"]["chain"] == "auto3dseg" and ram["config"]["expansion"] == "int64"
    assert ram["config"]["batch"] == 2  # the template's num_images_per_batch
    assert ram["config"]["peak_bytes_per_voxel"] > 200  # the int64 sum of masks: 16 x 14 B/voxel on the way
    assert ram["peak_bytes"] == ram["worst_case"]["peak_bytes"] >= ram["typical"]["peak_bytes"]
    assert ram["typical"]["epochs_simulated"] == 50 and ram["typical"]["p_epoch_exceeds_mem"] == 0
    assert ram["worst_case"]["drivers"] and ram["crops"]["left_out"] == 0
    fixed = json.loads(run(datalist, *DINTS, "--gpus", "2", "--expansion", "uint8").stdout)["ram"]
    assert fixed["config"]["peak_bytes_per_voxel"] == 33 and fixed["peak_bytes"] < ram["peak_bytes"]


def test_a_bundle_gives_the_loader_settings_unless_a_flag_does(datalist, tmp_path):
    from memory.field_replay import write_dints_bundle

    bundle = write_dints_bundle(tmp_path / "dints_0", workers=3, expansion="uint8", label_cast="uint8")
    ram = json.loads(run(datalist, *DINTS, "--bundle", bundle).stdout)["ram"]
    assert (ram["config"]["workers"], ram["config"]["batch"]) == (3, 2)
    assert set(ram["config"]["from_bundle"]) == {"num_workers", "num_images_per_batch"}
    assert ram["config"]["chain_detail"] == "bundle dints" and ram["config"]["peak_bytes_per_voxel"] == 33
    ram = json.loads(run(datalist, *DINTS, "--bundle", bundle, "--workers", "1").stdout)["ram"]
    assert ram["config"]["workers"] == 1 and ram["config"]["from_bundle"] == ["num_images_per_batch"]
    (bundle / "configs" / "transforms_train.yaml").write_text("transforms_train: [unclosed")
    res = run(datalist, *DINTS, "--bundle", bundle)
    assert res.exit_code == 2 and "transforms_train.yaml" in res.stderr and "Traceback" not in res.output


def test_one_hot_belongs_to_the_template_chain(datalist):
    res = run(datalist, *DINTS, "--chain", "auto3dseg", "--one-hot")
    assert res.exit_code == 2 and "--expansion" in res.stderr and "Traceback" not in res.output


def test_class_map_sets_the_output_channels(datalist, tmp_path):
    """Another class map trains more channels: the network's output and the VRAM it costs follow it."""
    (tmp_path / "classes.yaml").write_text("[ecs, pm, mito_mem, mito_lum, mito_ribo, golgi_mem, golgi_lum, ves_mem, "
                                           "ves_lum, endo_mem, endo_lum, lyso_mem, lyso_lum, ld_mem, ld_lum, er_mem, "
                                           "er_lum, eres_mem, eres_lum, ne_mem, ne_lum, np_out, np_in, hchrom, nuc]\n")
    default = json.loads(run(datalist, *FAST, "--no-max-batch").stdout)["vram"]
    wide = json.loads(run(datalist, *FAST, "--no-max-batch", "--classes", tmp_path / "classes.yaml").stdout)["vram"]
    assert default["network"]["out_channels"] == 14 and wide["network"]["out_channels"] == 25
    assert wide["peak_bytes"] > default["peak_bytes"]


# --- issue 23, item 8: one voice: which ROI and batch apply, why, and which constraint binds -------------------


def test_the_text_never_proposes_a_roi_the_trainer_refuses(datalist):
    """Auto3DSeg's 24^3 for these small crops stays in the JSON; the text plans 32^3 and says why."""
    from cellcheck.models.shapes import check_roi

    as_json = json.loads(run(datalist, "--model", "segresnet", "--no-max-batch", "--format", "json").stdout)
    assert as_json["auto_scale"]["roi_size"] == [24, 24, 24] and as_json["plan"]["roi_size"] == [32, 32, 32]
    with pytest.raises(ValueError):
        check_roi("segresnet", as_json["auto_scale"]["roi_size"])  # the trainer would refuse it
    text = run(datalist, "--model", "segresnet", "--no-max-batch", "--format", "text").stdout
    assert "Plan checked below: ROI 32x32x32, batch 3 patches per GPU step" in text
    assert "ROI: Auto3DSeg's 24x24x24 rounded up to 32x32x32: segresnet trains only ROIs whose sides are " \
           "multiples of 16 voxels and at least 32" in text
    for line in (line for line in text.splitlines() if "24x24x24" in line):
        assert "rounded up" in line or "cannot train" in line, line


def test_driven_by_names_only_crops_that_drive_the_memory(datalist):
    """Tiny crops add next to nothing: --mem is set by the processes, and no crop at 0.00 GiB is named."""
    res = run(datalist, "--model", "dints", "--no-max-batch", "--format", "text")
    assert "host RAM: --mem=8G, set by the processes themselves (7.00 GiB for the ranks and workers); " \
           "the crops in flight add 0.11 GiB" in res.stdout
    assert "driven by" not in res.stdout and "0.00 GiB)" not in res.stdout


def test_the_gpu_batch_and_the_loader_batch_say_which_is_which(datalist):
    """DiNTS: 13 patches per GPU step, cut from 2-crop DataLoader batches; the host-RAM line says crops."""
    text = run(datalist, "--model", "dints", "--no-max-batch", "--format", "text").stdout
    assert "batch 13 patches per GPU step" in text
    assert "a DataLoader batch is 2 crops, each cut into 26 patches of the ROI: the GPU step takes 13 of them" in text
    assert "x 2 crops per loader batch" in text and "x batch 2" not in text


def test_an_appended_record_is_drawn_session_after_session(tmp_path):
    """Issue 23, item 4: two runs profiled into one file are two sessions on one forward time axis, with no
    line joining them (each session's clock starts at 0: drawn as it was, the second ran back over the first)."""
    import numpy as np

    from cellcheck.memory.plot import figure_of_samples
    from cellcheck.memory.profiler import read_samples

    record = tmp_path / "memory.jsonl"
    for _ in range(2):
        done = CliRunner().invoke(cli, ["profile", "-o", str(record), "--interval", "0.05", "--", sys.executable, "-c",
                                        "import time; b = bytearray(20 * 2**20); time.sleep(0.3)"])
        assert done.exit_code == 0, done.output
    plotted = CliRunner().invoke(cli, ["profile", "plot", str(record), "-o", str(tmp_path / "memory.png")])
    assert plotted.exit_code == 0 and "in 2 sessions)" in plotted.stderr, plotted.output
    figure = figure_of_samples(read_samples(record))
    curves = [line for line in figure.axes[0].get_lines() if len(line.get_xdata()) > 2]  # not the marker lines
    assert curves
    for line in curves:
        x = np.asarray(line.get_xdata(), dtype=float)
        assert np.isnan(x).sum() == 1  # one break, between the sessions: nothing joins them
        assert np.all(np.diff(x[~np.isnan(x)]) >= 0)  # time runs forward through both
    assert "2 sessions" in figure.axes[-1].get_xlabel()
