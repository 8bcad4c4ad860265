"""PYTORCH_CUDA_ALLOC_CONF syntax (docs/INCIDENTS.md, incident 8), checked against the allocator's documented options."""

import pytest

from cellcheck.checks.environment import alloc_conf


@pytest.mark.parametrize("value", [
    "expandable_segments:True",
    "max_split_size_mb:128,garbage_collection_threshold:0.6",
    "roundup_power2_divisions:[256:1,512:2],expandable_segments:False",
    "backend:cudaMallocAsync",
])
def test_valid(value):
    assert list(alloc_conf({"PYTORCH_CUDA_ALLOC_CONF": value})) == []


@pytest.mark.parametrize("value, hint", [
    ("expandable_segments=True", "write 'expandable_segments:True'"),
    ("expandable_segment:True", "unknown option 'expandable_segment'"),
    ("expandable_segments:true", "does not take 'true'"),
    ("max_split_size_mb:lots", "does not take 'lots'"),
])
def test_invalid(value, hint):
    (f,) = alloc_conf({"PYTORCH_CUDA_ALLOC_CONF": value})
    assert f.check == "alloc-conf-invalid" and hint in f.message


def test_unset_is_fine():
    assert list(alloc_conf({})) == []
