"""Checks of file paths before work starts (no torch: the CLI uses them before importing the codec)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from avfc.errors import FileAccessError


def check_writable(dst: Union[str, "os.PathLike[str]"]) -> None:
    """Refuse, with a :class:`FileAccessError`, an output path that could not be written: a directory,
    an existing file without write permission, or a missing, non-directory or read-only folder (an
    existing file is overwritten, as :meth:`Path.write_bytes` does)."""
    path = Path(dst)
    if path.is_dir():
        raise FileAccessError(f"cannot write {path}: it is a directory")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise FileAccessError(f"cannot write {path}: permission denied")
        return
    folder = path.parent
    if not folder.exists():
        raise FileAccessError(f"cannot write {path}: no such directory {folder}")
    if not folder.is_dir():
        raise FileAccessError(f"cannot write {path}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileAccessError(f"cannot write {path}: permission denied in {folder}")
