"""GPU profiles: names people type, custom sizes, and a useful error for an unknown card."""

import pytest

from cellcheck.errors import CellcheckError
from cellcheck.memory.gpus import DEFAULT_GPU, MiB, PROFILES, gpu_profile


@pytest.mark.parametrize(
    "name, expected",
    [("l40s", "L40S"), ("L40S", "L40S"), ("a100-80gb", "A100-80GB"), ("A100", "A100-40GB"), ("h100", "H100-80GB"),
     ("H200", "H200"), ("v100-16gb", "V100-16GB")],
)
def test_lookup_is_case_insensitive_and_knows_short_names(name, expected):
    assert gpu_profile(name).name == expected


def test_l40s_is_the_default_and_has_the_field_memory():
    assert gpu_profile().name == DEFAULT_GPU == "L40S"
    assert gpu_profile("l40s").total_bytes == 46068 * MiB == 48305799168  # the field's L40S (docs/INCIDENTS.md)


def test_profiles_grow_with_the_card():
    order = ["V100-16GB", "A100-40GB", "L40S", "H100-80GB", "A100-80GB", "H200"]
    sizes = [PROFILES[n].total_bytes for n in order]
    assert sizes == sorted(sizes)


def test_custom_memory_in_mib():
    custom = gpu_profile(mem_mib=24000)
    assert (custom.name, custom.total_bytes) == ("custom", 24000 * MiB)
    assert gpu_profile("l40s", mem_mib=40000).total_bytes == 40000 * MiB


def test_unknown_gpu_lists_the_known_ones():
    with pytest.raises(CellcheckError) as err:
        gpu_profile("rtx9090")
    assert "rtx9090" in str(err.value)
    for name in PROFILES:
        assert name in str(err.value)


def test_non_positive_custom_memory_is_a_user_error():
    with pytest.raises(CellcheckError):
        gpu_profile(mem_mib=0)
