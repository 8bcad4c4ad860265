"""GPU profiles: how much device memory a training process can see, by card name or a custom size.

`total_bytes` is the memory the driver reports as the card's total (`nvidia-smi --query-gpu=memory.total`,
`torch.cuda.get_device_properties(i).total_memory`), in bytes; it is less than the marketing size
(an "80 GB" H100 reports 81559 MiB). The CUDA context and everything PyTorch allocates come out of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cellcheck.errors import CellcheckError

MiB = 2**20
GiB = 2**30


@dataclass(frozen=True)
class GpuProfile:
    """One GPU model: its name and the total memory its driver reports, in bytes."""

    name: str
    total_bytes: int
    note: str = ""

    @property
    def total_gib(self) -> float:
        """Total memory in GiB (2**30 bytes), the unit Auto3DSeg's formulas use."""
        return self.total_bytes / GiB

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "total_bytes": self.total_bytes}


#: memory.total as nvidia-smi reports it for each card (MiB). L40S is the field's measured value
#: (docs/INCIDENTS.md: "46068 MiB usable"); the others are the driver-reported totals of the common SXM/PCIe
#: boards. They are not calibrated on this project's machines: check with `nvidia-smi` and pass
#: `--gpu-mem 46068M` (any size with its unit) when a card differs (MIG slices, ECC on/off, driver reservations).
_PROFILES_MIB: dict[str, tuple[int, str]] = {
    "V100-16GB": (16160, "V100 16 GB (SXM2/PCIe)"),
    "A100-40GB": (40960, "A100 40 GB (SXM4/PCIe)"),
    "A100-80GB": (81920, "A100 80 GB (SXM4/PCIe)"),
    "L40S": (46068, "L40S 48 GB, measured on the field cluster"),
    "H100-80GB": (81559, "H100 80 GB HBM3 (SXM/PCIe)"),
    "H200": (143771, "H200 141 GB HBM3e"),
}

PROFILES: dict[str, GpuProfile] = {
    name: GpuProfile(name, mib * MiB, note) for name, (mib, note) in _PROFILES_MIB.items()
}

#: The field's card and cellcheck's default target.
DEFAULT_GPU = "L40S"

#: Short names people type (lower case) -> profile name.
_ALIASES = {
    "v100": "V100-16GB",
    "v100-16g": "V100-16GB",
    "a100": "A100-40GB",
    "a100-40g": "A100-40GB",
    "a100-80g": "A100-80GB",
    "l40s": "L40S",
    "l40s-48gb": "L40S",
    "h100": "H100-80GB",
    "h100-80g": "H100-80GB",
    "h200": "H200",
    "h200-141gb": "H200",
}


def known_gpus() -> list[str]:
    """Profile names, for messages and `--help`."""
    return list(PROFILES)


def gpu_profile(name: str | None = None, mem_mib: float | None = None) -> GpuProfile:
    """The profile for a card name (case-insensitive, e.g. "l40s", "a100-80gb", "h100"), or a custom one.

    `mem_mib` (MiB, as nvidia-smi prints) overrides the size; with no name it makes a profile called
    "custom". Unknown names raise CellcheckError listing the known ones.
    """
    if mem_mib is not None:
        if not mem_mib > 0:
            raise CellcheckError(f"--gpu-mem {mem_mib} MiB: GPU memory must be positive, e.g. 46068M or 45G")
        label = _lookup(name).name if name else "custom"
        return GpuProfile(label, int(round(mem_mib * MiB)), f"{mem_mib:g} MiB given by the user")
    return _lookup(name or DEFAULT_GPU)


def _lookup(name: str) -> GpuProfile:
    key = name.strip().lower()
    for profile_name, profile in PROFILES.items():
        if profile_name.lower() == key:
            return profile
    if key in _ALIASES:
        return PROFILES[_ALIASES[key]]
    raise CellcheckError(
        f"unknown GPU {name!r}; known: {', '.join(PROFILES)} (or give its memory with --gpu-mem, e.g. 46068M)"
    )
