"""trainer.infer: sliding-window ensemble, checkpoints, NIfTI/zarr outputs, the CLI (in process and real)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner

from cellcheck.classes import CLASS_NAMES
from cellcheck.errors import CellcheckError
from fixtures.ome import multiscale_attrs, pyramid
from trainer.infer import (
    class_names_of,
    load_checkpoint_model,
    predict_to_files,
    read_image,
    sliding_window_probabilities,
)
from cellcheck.models.networks import build_network

REPO = Path(__file__).resolve().parents[2]
SEG_ROI = (32, 32, 32)
DINTS_ROI = (48, 32, 32)  # another model and another ROI than the segresnet one


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _save_checkpoint(path: Path, model: str, roi: tuple[int, ...], seed: int) -> torch.nn.Module:
    """A from-scratch checkpoint as the trainer writes it (random weights, seeded)."""
    torch.manual_seed(seed)
    net = build_network(model, roi_size=roi)
    torch.save({"model": model, "config": {"num_classes": 14, "roi_size": list(roi), "deep_supervision": True},
                "state_dict": net.state_dict(), "epoch": 0}, path)
    return net.eval()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> Iterator[dict[str, Path]]:
    """A segresnet (ROI 32^3) and a dints (ROI 48x32x32) checkpoint; ~1 GB, deleted after the module."""
    root = tmp_path_factory.mktemp("ckpt")
    _save_checkpoint(root / "seg.pt", "segresnet", SEG_ROI, seed=0)
    _save_checkpoint(root / "dints.pt", "dints", DINTS_ROI, seed=1)
    yield {"seg": root / "seg.pt", "dints": root / "dints.pt"}
    for name in ("seg.pt", "dints.pt"):
        (root / name).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def seg(ckpts) -> torch.nn.Module:
    return load_checkpoint_model(ckpts["seg"])[0]


@pytest.fixture(scope="module")
def dints(ckpts) -> torch.nn.Module:
    return load_checkpoint_model(ckpts["dints"])[0]


def _image(shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random(shape, dtype=np.float32))[None, None]


def _uint8(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# --- sliding_window_probabilities ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(44, 28, 20), (20, 24, 17)], ids=["not-a-multiple", "smaller-than-roi"])
def test_probabilities_shape_and_range(seg, shape):
    prob = sliding_window_probabilities([seg], _image(shape), SEG_ROI, overlap=0.25)
    assert prob.shape == (14, *shape) and prob.dtype == torch.float32
    assert float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0


def test_same_checkpoint_twice_equals_single(seg):
    x = _image((20, 24, 17), seed=1)
    assert torch.equal(sliding_window_probabilities([seg, seg], x, SEG_ROI),
                       sliding_window_probabilities([seg], x, SEG_ROI))


def test_two_models_with_their_own_rois_average_probabilities(seg, dints):
    x = _image((40, 30, 20), seed=2)
    a = sliding_window_probabilities([seg], x, SEG_ROI)
    b = sliding_window_probabilities([dints], x, DINTS_ROI)
    both = sliding_window_probabilities([seg, dints], x, [SEG_ROI, DINTS_ROI])
    assert torch.allclose(both, (a + b) / 2, atol=1e-6, rtol=0)
    assert not torch.allclose(a, b, atol=1e-3)  # the ensemble is not trivially one model


class _ListNet(torch.nn.Module):
    """Returns [full, half] in every mode, like a deep-supervision head that never collapses."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 14, 1)

    def forward(self, x):
        y = self.conv(x)
        return [y, y[..., ::2, ::2, ::2]]


def test_list_output_uses_the_first_and_training_mode_is_restored():
    net = _ListNet().train()
    x = _image((10, 12, 8))
    prob = sliding_window_probabilities([net], x, (16, 16, 16))
    with torch.no_grad():
        expected = torch.sigmoid(net.conv(x))[0]
    assert torch.allclose(prob, expected, atol=1e-6)
    assert net.training


def test_bad_image_shape_and_overlap(seg):
    with pytest.raises(ValueError, match=r"\(1, 1, Z, Y, X\)"):
        sliding_window_probabilities([seg], torch.zeros(1, 2, 8, 8, 8), SEG_ROI)
    with pytest.raises(ValueError, match="overlap"):
        sliding_window_probabilities([seg], torch.zeros(1, 1, 8, 8, 8), SEG_ROI, overlap=1.0)


# --- checkpoints -------------------------------------------------------------------------------------------


def test_load_checkpoint_model_rebuilds_the_network(ckpts, seg):
    net, config = load_checkpoint_model(ckpts["seg"])
    assert config["model"] == "segresnet" and config["roi_size"] == list(SEG_ROI) and config["epoch"] == 0
    assert not net.training
    for (k, v), (k2, v2) in zip(net.state_dict().items(), seg.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_missing_checkpoint_raises(tmp_path):
    with pytest.raises(CellcheckError, match="not found") as err:
        load_checkpoint_model(tmp_path / "nope.pt")
    assert str(tmp_path / "nope.pt") in str(err.value) and "\n" not in str(err.value)


def test_corrupt_and_foreign_checkpoints_raise(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CellcheckError, match="not a readable checkpoint"):
        load_checkpoint_model(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": {}}, foreign)
    with pytest.raises(CellcheckError, match="lacks model, config, state_dict"):
        load_checkpoint_model(foreign)
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": "segresnet", "config": {"roi_size": [32, 32, 32]}, "state_dict": {"x": torch.zeros(1)}}, wrong)
    with pytest.raises(CellcheckError, match="weights do not fit a segresnet"):
        load_checkpoint_model(wrong)


# --- files -------------------------------------------------------------------------------------------------


def _write_nifti(path: Path, data: np.ndarray) -> np.ndarray:
    affine = np.array([[0, 0, 8.0, 100.0], [0, 8.0, 0, -20.0], [-8.0, 0, 0, 5.5], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return affine


def test_predict_to_files_nifti_keeps_affine_and_matches_the_library(tmp_path, ckpts, seg):
    data = _uint8((24, 20, 28))
    affine = _write_nifti(tmp_path / "crop1.nii.gz", data)
    volume = read_image(tmp_path / "crop1.nii.gz")
    assert volume.data.dtype == np.uint8 and np.array_equal(volume.data, data)
    np.testing.assert_allclose(volume.affine, affine)
    out = predict_to_files([ckpts["seg"]], [tmp_path / "crop1.nii.gz"], tmp_path / "out", fmt="nifti")
    assert out == [tmp_path / "out" / "crop1_probabilities.nii.gz"]
    img = nib.load(str(out[0]))
    assert img.shape == (24, 20, 28, 14) and img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, affine)
    expected = sliding_window_probabilities([seg], torch.from_numpy(data / np.float32(255))[None, None].float(), SEG_ROI)
    np.testing.assert_allclose(np.asarray(img.dataobj), np.moveaxis(expected.numpy(), 0, -1), atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["crop1_probabilities.nii.gz"]  # no temp left


def test_predict_to_files_zarr_from_array_and_ome_ngff_group(tmp_path, ckpts):
    raw = _uint8((20, 18, 22), seed=3)
    zarr.create_array(store=str(tmp_path / "plain.zarr"), data=raw, zarr_format=3)
    group = zarr.open_group(str(tmp_path / "em.zarr"), mode="w", zarr_format=3)
    group.attrs.update(multiscale_attrs(3, "raw", pyramid([8, 8, 8], [0, 0, 0], 2)))
    group.create_array("s0", data=raw)
    group.create_array("s1", data=raw[::2, ::2, ::2])
    out = predict_to_files([ckpts["seg"]], [tmp_path / "plain.zarr", tmp_path / "em.zarr"], tmp_path / "out",
                           fmt="zarr")
    assert [p.name for p in out] == ["plain_probabilities.zarr", "em_probabilities.zarr"]
    first, second = (zarr.open_array(str(p), mode="r") for p in out)
    assert first.shape == (14, 20, 18, 22) and first.dtype == np.float32 and first.metadata.zarr_format == 2
    assert first.attrs["class_names"] == list(CLASS_NAMES)
    np.testing.assert_array_equal(first[...], second[...])  # the group's first level is the same voxels
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in out)
    again = predict_to_files([ckpts["seg"]], [tmp_path / "em.zarr"], tmp_path / "out", fmt="zarr", overwrite=True)
    np.testing.assert_array_equal(zarr.open_array(str(again[0]), mode="r")[...], second[...])


def test_predict_to_files_rejects_clashing_outputs_and_another_dtype(tmp_path, ckpts):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        _write_nifti(tmp_path / sub / "crop.nii.gz", _uint8((8, 8, 8)))
    with pytest.raises(CellcheckError, match="same output"):
        predict_to_files([ckpts["seg"]], [tmp_path / "a" / "crop.nii.gz", tmp_path / "b" / "crop.nii.gz"], tmp_path)
    # a checkpoint without a stored rule trained on uint8 / 255: a uint16 image means something else
    _write_nifti(tmp_path / "wide.nii.gz", np.full((8, 8, 8), 4000, dtype=np.uint16))
    with pytest.raises(CellcheckError, match="voxels are uint16, the model was trained on uint8 images"):
        predict_to_files([ckpts["seg"]], [tmp_path / "wide.nii.gz"], tmp_path / "out")
    assert not (tmp_path / "out" / "wide_probabilities.nii.gz").exists()


# --- command line -----------------------------------------------------------------------------------------


def test_cli_in_process(tmp_path, ckpts):
    """`cellcheck infer` through the group: results on stdout, every error one line through the one edge."""
    from cellcheck.cli import cli

    _write_nifti(tmp_path / "c.nii.gz", _uint8((16, 12, 20)))
    runner = CliRunner()
    ok = runner.invoke(cli, ["infer", "--checkpoint", str(ckpts["seg"]), "--checkpoint", str(ckpts["seg"]),
                             str(tmp_path / "c.nii.gz"), "--output-dir", str(tmp_path / "o"),
                             "--file-format", "zarr", "--overlap", "0.5"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip() == str(tmp_path / "o" / "c_probabilities.zarr")
    assert zarr.open_array(ok.stdout.strip(), mode="r").shape == (14, 16, 12, 20)
    missing = runner.invoke(cli, ["infer", "--checkpoint", str(tmp_path / "x.pt"), str(tmp_path / "c.nii.gz"),
                                  "--output-dir", str(tmp_path / "o")])
    assert missing.exit_code == 2
    assert missing.stderr.count("\n") == 1 and "x.pt: checkpoint not found" in missing.stderr
    usage = runner.invoke(cli, ["infer", "--checkpoint", str(ckpts["seg"]), str(tmp_path / "c.nii.gz")])
    assert usage.exit_code == 2 and usage.stderr.count("\n") == 1 and "'--output-dir'" in usage.stderr
    bad_format = runner.invoke(cli, ["infer", "--checkpoint", "a.pt", "x.nii.gz", "--output-dir", "o",
                                     "--file-format", "tiff"])
    assert bad_format.exit_code == 2 and bad_format.stderr.count("\n") == 1 and "tiff" in bad_format.stderr
    assert runner.invoke(cli, ["infer", "--help"]).exit_code == 0


def test_cli_real_subprocess(tmp_path, ckpts):
    _write_nifti(tmp_path / "c.nii.gz", _uint8((16, 12, 20), seed=5))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "cellcheck", "infer", "--checkpoint", str(ckpts["seg"]), str(tmp_path / "c.nii.gz"),
         "--output-dir", str(tmp_path / "o")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = tmp_path / "o" / "c_probabilities.nii.gz"
    assert run.stdout.strip() == str(out)
    assert nib.load(str(out)).shape == (16, 12, 20, 14)
    usage = subprocess.run([sys.executable, "-m", "cellcheck", "infer", "--checkpoint", str(ckpts["seg"]),
                            str(tmp_path / "c.nii.gz")], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)
    assert usage.returncode == 2 and usage.stderr.startswith("cellcheck: ") and usage.stderr.count("\n") == 1


# --- issue 23, item 10: what the help promises, class names in every output, no folder left by a failure --------


def _infer(args: list[str]):
    from cellcheck.cli import cli

    return CliRunner().invoke(cli, ["infer", *args])


def test_help_says_the_zarr_output_is_format_2_as_written(tmp_path, ckpts):
    """The help said "v3 array" and infer wrote format 2: the help now says what is written."""
    shown = " ".join(_infer(["--help"]).stdout.split())
    assert "format-2 array (C, Z, Y, X)" in shown and "v3" not in shown
    _write_nifti(tmp_path / "c.nii.gz", _uint8((16, 12, 20)))
    r = _infer(["--checkpoint", str(ckpts["seg"]), str(tmp_path / "c.nii.gz"), "--output-dir", str(tmp_path / "o"),
                "--file-format", "zarr"])
    assert r.exit_code == 0, r.output
    assert zarr.open_array(r.stdout.strip(), mode="r").metadata.zarr_format == 2


def test_nifti_output_names_its_classes(tmp_path, ckpts):
    """The NIfTI map carries its class names (a JSON header extension), as the zarr map's attributes do."""
    _write_nifti(tmp_path / "c.nii.gz", _uint8((16, 12, 20)))
    r = _infer(["--checkpoint", str(ckpts["seg"]), str(tmp_path / "c.nii.gz"), "--output-dir", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    out = Path(r.stdout.strip())
    assert class_names_of(out) == list(CLASS_NAMES)
    [ext] = nib.load(str(out)).header.extensions
    assert b'"class_names"' in ext.get_content() and nib.load(str(out)).shape[-1] == len(CLASS_NAMES)


def test_a_failed_infer_leaves_no_output_folder(tmp_path, ckpts):
    """An image whose header reads but whose voxels do not: one line, exit 2, and no empty folder left behind."""
    _write_nifti(tmp_path / "cut.nii.gz", _uint8((16, 12, 20)))
    data = (tmp_path / "cut.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    r = _infer(["--checkpoint", str(ckpts["seg"]), str(tmp_path / "cut.nii.gz"), "--output-dir",
                str(tmp_path / "new" / "maps")])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "cut.nii.gz" in r.stderr, r.output
    assert not (tmp_path / "new").exists()


def test_a_rerun_does_not_replace_maps_without_overwrite(tmp_path, ckpts):
    _write_nifti(tmp_path / "c.nii.gz", _uint8((16, 12, 20)))
    args = ["--checkpoint", str(ckpts["seg"]), str(tmp_path / "c.nii.gz"), "--output-dir", str(tmp_path / "o")]
    assert _infer(args).exit_code == 0
    out = tmp_path / "o" / "c_probabilities.nii.gz"
    before = out.stat().st_mtime_ns
    again = _infer(args)
    assert again.exit_code == 2 and "already exists" in again.stderr and "--overwrite" in again.stderr
    assert out.stat().st_mtime_ns == before
    assert _infer([*args, "--overwrite"]).exit_code == 0


def test_old_spellings_still_work_with_a_warning(tmp_path, ckpts):
    """Issue 23, item 11: --output DIR and --format nifti|zarr are --output-dir and --file-format now."""
    _write_nifti(tmp_path / "c.nii.gz", _uint8((16, 12, 20)))
    r = _infer(["--checkpoint", str(ckpts["seg"]), str(tmp_path / "c.nii.gz"), "--output", str(tmp_path / "o"),
                "--format", "zarr"])
    assert r.exit_code == 0, r.output
    assert Path(r.stdout.strip()) == tmp_path / "o" / "c_probabilities.zarr"
    warned = r.stderr.splitlines()
    assert len(warned) == 2 and all("deprecated" in w for w in warned)
    assert "--output-dir" in warned[0] and "--file-format" in warned[1]
