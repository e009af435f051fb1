#!/usr/bin/env python3
"""A userspace NFS client for the observer: Debian's libnfs (libnfs-utils' library) through
ctypes, because the host's kernel may have no NFS client to mount with.

    nfsclient.py put SERVER EXPORT NAME FILE     write FILE as EXPORT/NAME, fsync, close
    nfsclient.py cat SERVER EXPORT NAME          print EXPORT/NAME

``put`` is one acknowledged write as a kernel client's ``write(); fsync(); close()`` is: the
file is created, written with O_SYNC (NFSv3 FILE_SYNC writes: the server replies once the
data is on stable storage, which a ``sync`` export honours) and fsync'ed (a COMMIT), and only
then does it exit 0. Every call uses a fresh connection (NFSv3 over TCP, from a reserved port
as root), so a call after a failover reaches the new owner. Exit 0 ok, 1 NFS error (the
message on stderr), 2 usage. Run it inside the observer's namespace (``ip netns exec``)
with a time limit of its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

NFS_V3 = 3
TIMEOUT_MS = 10000


class NFSError(Exception):
    pass


def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("nfs")
    if name is None:
        raise NFSError("libnfs is not installed (Debian: libnfs-utils)")
    lib = ctypes.CDLL(name)
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    pp = ctypes.POINTER(ctypes.c_void_p)
    u64 = ctypes.c_uint64
    for fn, args, res in (
        ("nfs_init_context", [], vp),
        ("nfs_destroy_context", [vp], None),
        ("nfs_get_error", [vp], cp),
        ("nfs_set_timeout", [vp, ctypes.c_int], None),
        ("nfs_set_version", [vp, ctypes.c_int], ctypes.c_int),
        ("nfs_mount", [vp, cp, cp], ctypes.c_int),
        ("nfs_umount", [vp], ctypes.c_int),
        ("nfs_create", [vp, cp, ctypes.c_int, ctypes.c_int, pp], ctypes.c_int),
        ("nfs_open", [vp, cp, ctypes.c_int, pp], ctypes.c_int),
        ("nfs_write", [vp, vp, u64, ctypes.c_char_p], ctypes.c_int),
        ("nfs_read", [vp, vp, u64, ctypes.c_char_p], ctypes.c_int),
        ("nfs_fsync", [vp, vp], ctypes.c_int),
        ("nfs_close", [vp, vp], ctypes.c_int),
    ):
        f = getattr(lib, fn)
        f.argtypes = args
        f.restype = res
    return lib


class Client:
    def __init__(self, server: str, export: str) -> None:
        self.lib = _library()
        self.ctx = self.lib.nfs_init_context()
        if not self.ctx:
            raise NFSError("nfs_init_context failed")
        self.lib.nfs_set_timeout(self.ctx, TIMEOUT_MS)
        self.lib.nfs_set_version(self.ctx, NFS_V3)
        self.mounted = False
        self._check(self.lib.nfs_mount(self.ctx, server.encode(), export.encode()),
                    f"mount {server}:{export}")
        self.mounted = True

    def _check(self, rc: int, what: str) -> int:
        if rc < 0:
            err = self.lib.nfs_get_error(self.ctx) or b""
            raise NFSError(f"{what}: {err.decode(errors='replace')} ({os.strerror(-rc)})")
        return rc

    def put(self, name: str, data: bytes) -> None:
        fh = ctypes.c_void_p()
        path = f"/{name}".encode()
        self._check(self.lib.nfs_create(self.ctx, path, os.O_WRONLY | os.O_TRUNC | os.O_SYNC,
                                        0o644, ctypes.byref(fh)), f"create {name}")
        try:
            done = 0
            while done < len(data):
                chunk = data[done:done + 65536]
                n = self._check(self.lib.nfs_write(self.ctx, fh, len(chunk), chunk),
                                f"write {name}")
                if n <= 0:
                    raise NFSError(f"write {name}: wrote nothing")
                done += n
            self._check(self.lib.nfs_fsync(self.ctx, fh), f"fsync {name}")
        finally:
            rc = self.lib.nfs_close(self.ctx, fh)
        self._check(rc, f"close {name}")

    def cat(self, name: str, limit: int = 1 << 20) -> bytes:
        fh = ctypes.c_void_p()
        self._check(self.lib.nfs_open(self.ctx, f"/{name}".encode(), os.O_RDONLY,
                                      ctypes.byref(fh)), f"open {name}")
        try:
            buf = ctypes.create_string_buffer(limit)
            n = self._check(self.lib.nfs_read(self.ctx, fh, limit, buf), f"read {name}")
            return buf.raw[:n]
        finally:
            self.lib.nfs_close(self.ctx, fh)

    def close(self) -> None:
        if self.mounted:
            self.lib.nfs_umount(self.ctx)
        self.lib.nfs_destroy_context(self.ctx)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] not in ("put", "cat") or (argv[0] == "put") != (len(argv) == 5):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        client = Client(argv[1], argv[2])
        try:
            if argv[0] == "put":
                with open(argv[4], "rb") as f:
                    client.put(argv[3], f.read())
            else:
                sys.stdout.buffer.write(client.cat(argv[3]))
        finally:
            client.close()
    except (NFSError, OSError) as exc:
        print(f"nfsclient: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
