"""The learning benchmark's data and gate, without its training (that is `learning.py`, and `--quick` in CI)."""

import json

import nibabel as nib
import numpy as np
import pytest

from cellcheck.classes import NUM_CLASSES
from learning import ARMS, KEEP, N_TRAIN, N_VAL, arm_config, gate_verdict, make_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning")
    return root, make_data(root / "data")


def volume(path):
    return np.asarray(nib.load(str(path)).dataobj)


def test_full_crops_annotate_every_class(data):
    _, datalists = data
    entries = json.loads(datalists["full"].read_text())["training"]
    assert len(entries) == N_TRAIN + N_VAL and sum(e["fold"] == 0 for e in entries) == N_VAL
    assert {e["annotated_classes"] for e in entries} == {",".join(str(c) for c in range(NUM_CLASSES))}
    present = set()
    for e in entries:
        present |= set(np.unique(volume(datalists["full"].parent / e["label"])).tolist())
    assert present == set(range(NUM_CLASSES + 1))  # every class has voxels somewhere


def test_hidden_classes_leave_the_annotation_and_the_label_not_the_image(data):
    """As in the field: a hidden class is not in annotated_classes and its voxels read 0; the EM still shows it."""
    _, datalists = data
    full = {e["label"]: e for e in json.loads(datalists["full"].read_text())["training"]}
    hidden = json.loads(datalists["hidden"].read_text())["training"]
    kept_count = np.zeros(NUM_CLASSES, dtype=int)
    for e in hidden:
        f_label = volume(datalists["full"].parent / e["label"])
        h_label = volume(datalists["hidden"].parent / e["label"])
        assert np.array_equal(volume(datalists["full"].parent / e["image"]),
                              volume(datalists["hidden"].parent / e["image"]))
        if e["fold"] == 0:
            assert e == full[e["label"]] and np.array_equal(f_label, h_label)
            continue
        kept = [int(c) for c in e["annotated_classes"].split(",")]
        assert len(kept) == KEEP
        kept_count[kept] += 1
        keep_voxels = np.isin(f_label, [c + 1 for c in kept])
        assert np.array_equal(h_label[keep_voxels], f_label[keep_voxels])
        assert not h_label[~keep_voxels].any()
        assert (f_label[~keep_voxels] > 0).any()  # something was hidden in every crop
    assert kept_count.tolist() == [KEEP] * NUM_CLASSES  # each class annotated in KEEP of the 14 crops


def test_the_gate_refuses_only_the_unmasked_arm(data, tmp_path):
    """The data (and its stores) pass the gate; only `loss: dice_bce` on it is refused, for loss-unmasked alone."""
    _, datalists = data
    verdicts = {arm: gate_verdict(arm_config(arm, datalists, 0, tmp_path)) for arm in ARMS}
    assert verdicts == {"masked": {"passed": True, "failing": []},
                        "unmasked": {"passed": False, "failing": ["loss-unmasked"]},
                        "full": {"passed": True, "failing": []},
                        "store": {"passed": True, "failing": []}}
