"""Files written with secrets, and the private directories they live in.

Every file that holds a key, a certificate, a pending plan or an audit
record is written through these helpers, so:

- a new file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a file or a
  symlink (dangling or not) already at the path makes the create fail, so
  nothing is ever written through a link someone planted, not even one
  planted between a check and the write;
- its mode is set with ``fchmod`` after the create, so it is exactly what
  the caller asked (0600 for secrets) whatever the umask;
- a directory this code creates gets an explicit mode (0700 unless it is
  meant to be shared, like ``certs gen``'s 0755), set after ``mkdir``: the
  umask only narrows ``mkdir``'s mode, and a umask of 0 would make it 0777;
- an append-only log (:func:`open_append`) is opened with ``O_NOFOLLOW``
  and ``O_NONBLOCK`` and must be a regular file, so a symlink or a FIFO at
  its path is refused instead of followed or blocked on.

:func:`check_private_dir` is the rule for a directory shared by the
processes of one operator (the state directory of pending plans): it must
be a directory owned by the current user and not accessible to group or
others; otherwise :class:`UnsafePath` (a :class:`ConfigError`: the CLI
prints its one-line message, which says the fix, and exits 2).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ._errors import ConfigError

__all__ = ["UnsafePath", "check_private_dir", "create_new", "make_dir", "open_append", "private_dir",
           "replace_file"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafePath(ConfigError):
    """A path that can't be trusted with secrets (wrong owner or mode, a symlink, not a regular file)."""


def create_new(path: str | os.PathLike[str], data: bytes, mode: int) -> None:
    """Create ``path`` holding ``data`` with exactly ``mode``; ``FileExistsError`` if anything is there.

    "Anything" includes a symlink, dangling or not: ``O_EXCL`` never follows one.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed (or not narrowed) it: set exactly what we mean
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def replace_file(path: str | os.PathLike[str], data: bytes, mode: int) -> None:
    """Atomically replace ``path`` with a new file (``create_new`` beside it, then ``rename``).

    ``rename`` replaces a symlink at ``path`` itself and never writes through it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        os.unlink(tmp)  # a leftover of a crashed writer with our pid
    except FileNotFoundError:
        pass
    create_new(tmp, data, mode)
    os.replace(tmp, path)


def make_dir(path: str | os.PathLike[str], mode: int) -> Path:
    """``path`` as a directory; created with exactly ``mode`` (whatever the umask) if it is missing.

    Missing parents are created as ``mkdir -p`` would; an existing directory is left as it is.
    """
    path = Path(path)
    if not os.path.isdir(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
        else:
            os.chmod(path, mode, follow_symlinks=False)
    return path


def private_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as a directory, created 0700 if it is missing (see :func:`make_dir`)."""
    return make_dir(path, 0o700)


def check_private_dir(path: str | os.PathLike[str], what: str = "directory") -> Path:
    """Create ``path`` (0700) if missing; refuse it unless it is ours and closed to group and others.

    A symlink is judged by the directory it points to (that is what gets
    used) and must itself be ours.  Raises :class:`UnsafePath` with a
    one-line message that says the fix.
    """
    path = private_dir(path)
    uid = os.geteuid()
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{what} {path} is not a directory")
    if os.path.islink(path):
        lst = os.lstat(path)
        if lst.st_uid != uid:
            raise UnsafePath(f"{what} {path} is a symlink owned by uid {lst.st_uid}, not by you (uid {uid}); "
                             f"fix: point it at a directory you own with mode 700, or use another directory")
    if st.st_uid != uid:
        raise UnsafePath(f"{what} {path} is owned by uid {st.st_uid}, not by you (uid {uid}); fix: "
                         f"chown {uid} {path} && chmod 700 {path}, or use a directory of your own")
    if st.st_mode & 0o077:
        raise UnsafePath(f"{what} {path} has mode {stat.S_IMODE(st.st_mode):04o}: group or others can read or "
                         f"change it; fix: chmod 700 {path}")
    return path


def open_append(path: str | os.PathLike[str], mode: int = 0o600) -> int:
    """An fd appending to ``path`` (created with exactly ``mode``); never through a symlink, never a FIFO.

    A file of ours with a wider mode (an older version made audit logs 0644)
    is narrowed to ``mode``.  The caller closes the fd.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, mode)
    except OSError as e:
        if os.path.islink(path):
            raise UnsafePath(f"{path} is a symlink; refusing to write through it (remove it, or name the "
                             "real file)") from None
        if e.errno == errno.ENXIO:  # a FIFO nobody reads
            raise UnsafePath(f"{path} is not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{path} is not a regular file")
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & ~mode:
            os.fchmod(fd, mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
