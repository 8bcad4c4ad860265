"""The audit never writes inside the dataset: every file's bytes and mtime are unchanged, none added."""

import hashlib
import os

from cellcheck.audit import audit


def snapshot(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            digest = hashlib.sha256(open(p, "rb").read()).hexdigest() if os.path.isfile(p) else None
            out[os.path.relpath(p, root)] = (st.st_mtime_ns, st.st_mode, digest)
    return out


def test_audit_leaves_the_dataset_untouched(defects_all):
    before = snapshot(defects_all)
    audit(defects_all / "datalist.json")
    audit(defects_all / "zarr")
    assert snapshot(defects_all) == before
