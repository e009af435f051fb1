"""Linux inotify on the asyncio loop: the names written, renamed into or deleted from a few
directories.

The C library's inotify_init1 and inotify_add_watch through ctypes (the daemon has ctypes
loaded already for memory locking, supervisor.drivers.realtime), the events read from the
descriptor with ``os.read`` when the loop finds it readable. This replaces pyinotify, which
brought asyncore and glob into the daemon (about 2.5 MB of its memory) for one watch.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import struct
from collections.abc import Callable, Iterable

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_DELETE = 0x00000200
#: the kernel's queue overflowed: events were lost (wd -1, no name)
IN_Q_OVERFLOW = 0x00004000

#: struct inotify_event without its name: wd, mask, cookie, len (<sys/inotify.h>)
_EVENT = struct.Struct("iIII")


def parse_events(data: bytes) -> list[tuple[int, int, str]]:
    """The events in what one read of an inotify descriptor returned: (wd, mask, name);
    name "" for an event without one. A record cut short ends the list."""
    events: list[tuple[int, int, str]] = []
    at = 0
    while at + _EVENT.size <= len(data):
        wd, mask, _cookie, size = _EVENT.unpack_from(data, at)
        at += _EVENT.size
        if at + size > len(data):
            break
        name = data[at:at + size].split(b"\0", 1)[0]
        events.append((wd, mask, os.fsdecode(name)))
        at += size
    return events


class DirectoryWatch:
    """Calls ``changed(name)`` for every event of ``mask`` on a name in the watched
    directories (``changed("")`` after a queue overflow: something may have been missed)."""

    def __init__(self, directories: Iterable[str], mask: int,
                 changed: Callable[[str], None]) -> None:
        self.directories = sorted(set(directories))
        self.mask = mask
        self.changed = changed
        self.fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open the descriptor, watch every directory, read it on ``loop``; OSError when
        the kernel refuses (no inotify, too many watches, a directory missing)."""
        libc = ctypes.CDLL(None, use_errno=True)
        init, add = libc.inotify_init1, libc.inotify_add_watch
        init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
        add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
        fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        try:
            for directory in self.directories:
                if add(fd, os.fsencode(directory), self.mask) < 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"inotify_add_watch {directory}: {os.strerror(err)}")
            loop.add_reader(fd, self._readable)
        except BaseException:
            os.close(fd)
            raise
        self.fd, self._loop = fd, loop

    def _readable(self) -> None:
        assert self.fd is not None
        try:
            data = os.read(self.fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        for _wd, mask, name in parse_events(data):
            if mask & IN_Q_OVERFLOW:
                self.changed("")
            elif mask & self.mask:
                self.changed(name)

    def close(self) -> None:
        if self.fd is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd, self._loop = None, None
