"""The one way cellcheck writes a file or a folder: atomically, with the permissions the umask allows.

A reader (a colleague's job, TensorBoard, a second `cellcheck` process) never sees half a file, a crash
never leaves one, and what we write is as readable as any file the user's shell would create: temporary
files are born 0600 (mkstemp) and folders 0700 (mkdtemp), so the mode is set from the umask before the
rename makes them visible.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def umask() -> int:
    """This process's umask (read from /proc where it can be, so it is never changed, even for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: str | bytes | Callable[[BinaryIO], None]) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file.

    `data` is the text or bytes to write, or a function that writes into the open binary file
    (a checkpoint, a NIfTI stream) so that large outputs are not built in memory first.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_folder_atomic(path: Path, fill: Callable[[Path], None]) -> None:
    """`write_atomic` for a folder (a zarr store): `fill` builds it beside `path`, then it replaces `path`.

    An existing folder is moved aside first and removed after the swap, so `path` is never half written.
    """
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or "."))
    old = tmp.with_name(tmp.name[: -len(".tmp")] + ".old")
    try:
        fill(tmp)
        _open_up(tmp)
        if path.exists():
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old.exists():
                os.replace(old, path)  # put the previous output back
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _open_up(folder: Path) -> None:
    """Give a folder built under mkdtemp (0700) and what lies in it the modes the umask allows."""
    mask = umask()
    for root, dirs, names in os.walk(folder):
        os.chmod(root, 0o777 & ~mask)
        for name in names:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)
