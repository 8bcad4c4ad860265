"""The house's layers, held by contracts (pyproject.toml, [tool.importlinter]) and by fresh interpreters.

lint-imports checks the contracts on the real tree; a copy of the tree with one forbidden import added
must break the contract that names it, so a contract that cannot fail would fail here. Every module of
the torch-free layers is imported alone in a fresh interpreter where torch cannot be imported.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"
#: Packages and modules that must import without torch (the audit runs on a login node without a GPU stack).
TORCH_FREE = ("cellmap", "readers", "checks", "audit", "convert", "stats", "dataanalyzer", "config", "gate",
              "report", "grid", "scan", "classes", "datalist")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache", str(root / "pyproject.toml")], cwd=root, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_contracts_hold():
    proc = lint(REPO)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("cellcheck/memory/vram.py", "import trainer.train", "The memory model traces the models layer, never the trainer"),
    ("cellcheck/checks/conversion.py", "import cellcheck.convert.case", "Checks do not import convert"),
    ("cellcheck/cellmap/stores.py", "import torch", "need neither torch nor the trainer"),
    ("trainer/train.py", "import cellcheck.cli", "the trainer (its entry point aside) never imports the CLI"),
    ("cellcheck/readers/volume.py", "import cellcheck.readers.open", "No import cycles"),
])
def test_a_violation_breaks_its_contract(tmp_path, module, line, contract):
    for name in ("cellcheck", "trainer"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "slurm", "data"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    proc = lint(tmp_path)
    assert proc.returncode != 0
    assert contract in " ".join(_broken(proc.stdout)), proc.stdout[-3000:]


def _broken(text: str) -> list[str]:
    """The contracts lint-imports reports BROKEN (a long name wraps onto the next line)."""
    out, current = [], ""
    for ln in text.splitlines():
        current = f"{current} {ln}".strip()
        if "KEPT" in ln or "BROKEN" in ln:
            if "BROKEN" in ln:
                out.append(current)
            current = ""
    return out


def _modules(package: str) -> list[str]:
    root = REPO / "cellcheck" / package
    if root.with_suffix(".py").is_file():
        return [f"cellcheck.{package}"]
    return sorted("cellcheck." + ".".join(p.relative_to(REPO / "cellcheck").with_suffix("").parts).removesuffix(".__init__")
                  for p in root.rglob("*.py"))


@pytest.mark.parametrize("module", [m for p in TORCH_FREE for m in _modules(p)])
def test_imports_alone_without_torch(module):
    """A fresh interpreter where `import torch` fails: each module imports on its own (no import-order luck)."""
    code = f"import sys; sys.modules['torch'] = None; sys.modules['monai'] = None; import {module}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
