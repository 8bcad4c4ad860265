"""The job's environment: settings that only fail once the job runs (docs/INCIDENTS.md, incident 8).

`PYTORCH_CUDA_ALLOC_CONF=expandable_segments=True` looks right and is rejected by the
caching allocator at the first CUDA allocation, minutes into a queued job: its syntax is
comma-separated `key:value` pairs.
"""

from __future__ import annotations

import re
from typing import Iterator, Mapping

from cellcheck.findings import Finding, finding

#: Options of PyTorch's CUDA caching allocator and what their value must look like.
ALLOC_CONF_OPTIONS: dict[str, str] = {
    "max_split_size_mb": r"\d+",
    "roundup_power2_divisions": r"\d+|\[[^\]]*\]",
    "garbage_collection_threshold": r"0?\.\d+|1(\.0*)?",
    "expandable_segments": r"True|False",
    "backend": r"native|cudaMallocAsync",
    "release_lock_on_cudamalloc": r"True|False",
    "pinned_use_cuda_host_register": r"True|False",
    "pinned_num_register_threads": r"\d+",
    "pinned_use_background_threads": r"True|False",
    "per_process_memory_fraction": r"0?\.\d+|1(\.0*)?",
}


def alloc_conf(env: Mapping[str, str]) -> Iterator[Finding]:
    """`alloc-conf-invalid` for a PYTORCH_CUDA_ALLOC_CONF the allocator would reject."""
    for var in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"):
        value = env.get(var)
        if not value:
            continue
        for problem in _alloc_conf_problems(value):
            yield finding("alloc-conf-invalid", None, None, f"{var}={value!r}: {problem}", variable=var, value=value)


def _alloc_conf_problems(value: str) -> Iterator[str]:
    # split on commas outside [...] (roundup_power2_divisions takes a list)
    items = [i.strip() for i in re.split(r",(?![^\[]*\])", value) if i.strip()]
    for item in items:
        if ":" not in item:
            hint = item.replace("=", ":", 1) if "=" in item else f"{item}:<value>"
            yield f"'{item}' is not key:value; write '{hint}'"
            continue
        key, val = (p.strip() for p in item.split(":", 1))
        if key not in ALLOC_CONF_OPTIONS:
            yield f"unknown option '{key}' (known: {', '.join(ALLOC_CONF_OPTIONS)})"
        elif not re.fullmatch(ALLOC_CONF_OPTIONS[key], val):
            yield f"'{key}' does not take {val!r}"
