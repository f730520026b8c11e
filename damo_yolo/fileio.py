"""Files: atomic writes (a reader sees the old file or the whole new one, never a half-written file), and why a
path named for reading is not a file to read (checked before any heavy import)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union


def missing_file(path: Union[str, os.PathLike], what: str) -> Optional[str]:
    """``"<what> not found: <path>"`` (saying so when it is a directory), or None when ``path`` is a file."""
    path = Path(path)
    if path.is_file():
        return None
    return f"{what} not found: {path}" + (" (it is a directory)" if path.is_dir() else "")


def checkpoint_file_problem(path: Union[str, os.PathLike]) -> Optional[str]:
    """Why ``path`` cannot be a checkpoint, before reading it (a directory, missing, empty), or None."""
    path = Path(path)
    if path.is_dir():
        return f"checkpoint {path} is a directory, not a file"
    if not path.is_file():
        return f"checkpoint not found: {path}"
    if path.stat().st_size == 0:
        return f"checkpoint {path} is empty (0 bytes)"
    return None


def _umask() -> int:
    with open("/proc/self/status") as status:  # Linux: reading it leaves the process's umask alone
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def atomic_write(path: Union[str, os.PathLike], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, rename it over ``path``, fsync the
    folder. On any error the temporary file is removed and ``path`` is untouched. The file gets the mode
    a plain ``open(path, "w")`` would give it (0666 less the umask), not the temporary file's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def atomic_write_bytes(path: Union[str, os.PathLike], data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))
