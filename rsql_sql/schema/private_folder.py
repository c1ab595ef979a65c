"""A folder only this OS user could have written into, opened as a descriptor: what the value
index keeps on disk (``value_index``) is read and written relative to it, so another user of a
shared machine (a shared ``RSQL_CACHE_DIR``, a group-writable parent) can neither plant an
index nor read one, and a path swapped for a symbolic link after the check is never followed.

Why here and not a shared helper: the proxy's and the kernel's checks of their own files live
in their packages, which the SQL package may not import (docs/architecture.md)."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from rsql_common.errors import RSQLWarning

__all__ = ["own_folder"]

# what the folder check needs: folders opened as descriptors, files opened relative to them
_DIR_FD = (
    hasattr(os, "O_DIRECTORY")
    and hasattr(os, "O_NOFOLLOW")
    and hasattr(os, "geteuid")
    and os.open in os.supports_dir_fd
)


_WARNED: set[str] = set()  # folders already warned about: one warning each per process
_WARN_LOCK = threading.Lock()


def _folder_problem(st: os.stat_result) -> str | None:
    """Why a folder is not one only this user can have written into, or None."""
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _refuse(folder: Path, problem: str) -> None:
    with _WARN_LOCK:
        if str(folder) in _WARNED:
            return
        _WARNED.add(str(folder))
    warnings.warn(
        f"the value index is not kept on disk: {folder} {problem}, so another user could "
        "plant or read its files. Make it yours and private (chown it to you, chmod 700 "
        "it), remove it so that it is made again, or set RSQL_CACHE_DIR to a folder of your "
        "own (off: keep nothing on disk).",
        RSQLWarning,
        stacklevel=2,
    )


@contextlib.contextmanager
def own_folder(folder: Path, *, create: bool) -> Iterator[int | None]:
    """The folder, opened: a descriptor every file of the index is opened relative to, so the
    folder checked is the folder used (a path could be swapped for a symbolic link in
    between); None when it is absent (and not `create`), cannot be opened, or another user
    could have written into it (warned once: :func:`_refuse`)."""
    if not _DIR_FD:  # no descriptors for folders (Windows): nothing kept on disk
        yield None
        return
    try:
        if create:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_NOFOLLOW: a symbolic link planted under the folder's name is refused, not followed
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd < 0:
        try:
            st = os.lstat(folder)
        except OSError:  # absent: nothing kept yet
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            _refuse(folder, "is a symbolic link")
        elif st is not None:  # another user's folder we may not open, a file
            _refuse(folder, _folder_problem(st) or "cannot be opened")
        yield None
        return
    try:
        problem = _folder_problem(os.fstat(fd))
        if problem is not None:
            _refuse(folder, problem)
            yield None
        else:
            yield fd
    finally:
        os.close(fd)
