"""The one way to write a file: atomically and durably.

``atomic_write`` writes a temporary file in the target's own folder, created private (0600) and
given its final mode and owner before any byte is written (a key file is never readable by
others, not even for an instant), fsyncs it, renames it over the target (or links it, when an
existing file must not be replaced) and fsyncs the folder, so that after a power cut the folder
holds the old file or the new one, complete, never half of one and never neither. The state
files, the first-boot wizard, the DRBD resource files and ``twinbeat import-heartbeat`` all
write through it; ``atomic_copytree`` puts a whole folder in place the same way (the state
partition's bound folders), ``atomic_writer`` a file that arrives in pieces (an update
bundle), ``bind_unix`` a Unix socket (the control socket) and ``overwrite_and_delete``
removes a secret for good (the first-boot seed).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

if TYPE_CHECKING:
    import socket

# tempfile (with shutil) and socket are imported where they are used: `twinbeat persist
# prepare` imports this module on every boot and, after the first, writes nothing. The
# daemon's writes (atomic_write, bind_unix) name their temporary file or folder themselves
# (``_fresh``): tempfile, with shutil, random, bz2 and lzma, would stay in its memory.

#: tries at a fresh name before giving up (as tempfile's TMP_MAX)
_TRIES = 10000

# A folder on a file system that cannot fsync folders (some FUSE or network file systems)
# answers with one of these: the rename is then as durable as that file system makes it.
_NO_DIR_FSYNC = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}

_T = TypeVar("_T")


def atomic_write(
    path: str | Path,
    data: bytes | str,
    *,
    mode: int = 0o644,
    uid: int | None = None,
    gid: int | None = None,
    replace: bool = True,
    mkdir: bool = False,
) -> None:
    """Write ``data`` (text is UTF-8) to ``path``; see the module docstring.

    ``replace=False`` never overwrites: FileExistsError if ``path`` exists. ``mkdir`` creates
    the missing folders first. ``uid`` and ``gid`` (both or neither) set the owner.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _fresh(path.parent, f".{path.name}.", _create_private)
    try:
        try:
            os.fchmod(fd, mode)
            if uid is not None and gid is not None:
                os.fchown(fd, uid, gid)
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path exists: never overwrites
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_writer(path: str | Path, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """``atomic_write`` for data that arrives in pieces (a bundle over the network): write to
    the yielded file; when the block ends normally the file is fsynced and renamed into place
    (the folder fsynced), when it raises the temporary file is removed and ``path`` is as
    it was."""
    path = Path(path)
    fd, tmp = _fresh(path.parent, f".{path.name}.", _create_private)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_copytree(src: str | Path | None, dest: str | Path, *, mode: int) -> None:
    """Create the folder ``dest`` whole or not at all: a copy of ``src`` (empty when ``src``
    is None or not a folder) is made under a temporary name beside it, given ``mode``, and
    renamed into place. FileExistsError if ``dest`` exists (it is never replaced)."""
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists")
    import shutil

    # (named as atomic_writer names its file: _fresh, no tempfile; mkdir gives 0700 until
    # the chmod below, as mkdtemp did)
    tmp = Path(_fresh(dest.parent, f".{dest.name}.", lambda name: os.mkdir(name, 0o700))[1])
    try:
        if src is not None and Path(src).is_dir():
            shutil.copytree(src, tmp, symlinks=True, dirs_exist_ok=True)
            shutil.copystat(src, tmp)
        os.chmod(tmp, mode)
        os.rename(tmp, dest)  # a folder's rename fails if dest appeared meanwhile (not empty)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(dest.parent)


def overwrite_and_delete(path: str | Path) -> int:
    """Overwrite a file's bytes with zeros in place (fsynced), then delete it (the folder
    fsynced): a secret left in plain text is not readable from the file system afterwards.
    Returns the number of bytes overwritten. Not a guarantee against flash wear levelling or
    copy-on-write file systems; on the FAT boot partition the clusters are rewritten."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        left = size
        block = bytes(min(size, 1 << 16))
        while left > 0:
            left -= os.write(fd, block[:left])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)
    fsync_dir(path.parent)
    return size


def bind_unix(path: str | Path, *, mode: int = 0o600) -> socket.socket:
    """A Unix stream socket bound at ``path`` (replacing a stale one) with ``mode``, and never
    reachable there with another mode: it is bound in a fresh 0700 folder beside ``path``,
    given its mode and renamed into place (the daemon's control socket).

    The umask is not used for this: it is the whole process's, so setting it around the bind
    would hand it to anything forked meanwhile by another thread, and two servers starting in
    one event loop (each awaiting between set and restore) would leave it set for good.
    """
    import socket

    path = Path(path)
    _, tmpdir = _fresh(path.parent, ".bind-", lambda name: os.mkdir(name, 0o700))
    dfd = os.open(tmpdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # bound through the folder's descriptor: an address as short whatever the
            # folder's path (the temporary name is longer than the final one, and Python
            # binds at most 107 bytes: a final path near that limit would not bind)
            sock.bind(f"/proc/self/fd/{dfd}/socket")
            os.chmod("socket", mode, dir_fd=dfd)
            os.replace("socket", path, src_dir_fd=dfd)
        except BaseException:
            sock.close()
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink("socket", dir_fd=dfd)  # still there only if the rename failed
        os.close(dfd)
        os.rmdir(tmpdir)
    return sock


def _fresh(folder: Path, prefix: str, create: Callable[[str], _T]) -> tuple[_T, str]:
    """``create(name)`` for a fresh name ``folder/prefix<random>.tmp`` that did not exist
    (``create`` must fail with FileExistsError when it does: O_EXCL, mkdir), as tempfile's
    mkstemp and mkdtemp name theirs; (what it returned, the name)."""
    for _ in range(_TRIES):
        name = os.path.join(folder, f"{prefix}{os.urandom(6).hex()}.tmp")
        try:
            return create(name), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no fresh temporary name in {folder} after "
                                        f"{_TRIES} tries")


def _create_private(name: str) -> int:
    """A new file ``name`` (never an existing one, never through a symlink), 0600."""
    return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                   0o600)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename (or a new name) in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIR_FSYNC:
            raise
    finally:
        os.close(fd)
