"""The update agent: what one node asks of the other during `twinbeat upgrade` (I/O).

Each node runs ``twinbeat upgrade-agent`` (twinbeat-upgrade-agent.service), listening on its
crossover address, TCP port PORT. The node that runs ``twinbeat upgrade`` connects to the
peer's over the crossover cable to learn where it stands (``facts``), to copy the bundle to it
(``put``), to have it install the bundle (``install``) and reboot (``reboot``), and to remove
the copies at the end (``forget``). One request per connection:

    agent  -> client   TBU1 <nonce>\\n                 (16 random bytes, hex)
    client -> agent    <request JSON>\\t<mac>\\n         (the request names the nonce)
    client -> agent    <size bytes>                    (``put`` only: the bundle)
    agent  -> client   <answer JSON>\\t<mac>\\n

Both MACs are HMAC-SHA256 under a key derived from the cluster's shared secret (authkeys),
with a label for each direction and the agent's nonce inside: a request cannot be replayed
(the nonce is new for every connection), an answer cannot be taken for another one, and only
a holder of the cluster key can ask anything. The bundle's bytes are checked against the
SHA-256 the authenticated request names before the file is kept (written under a temporary
name, renamed into place; nothing is left on a failed copy). RAUC checks the bundle's own
signature when it is installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.atomicfile import atomic_write, atomic_writer

PORT = 7794
GREETING = "TBU1"
CHUNK = 1 << 20
MAX_LINE = 64 * 1024
#: free space kept on /persist beyond a received bundle
RESERVE = 64 * 2**20
BUNDLE_NAME = re.compile(r"^twinbeat-[0-9A-Za-z][0-9A-Za-z.+~-]{0,40}\.raucb\Z")
_LABEL_REQUEST = b"twinbeat-upgrade request"
_LABEL_ANSWER = b"twinbeat-upgrade answer"


class AgentError(Exception):
    """The peer's agent could not be asked, or its answer is not to be trusted."""


def channel_key(secret: bytes) -> bytes:
    """The agent's key: derived from the cluster secret, never the heartbeat's key itself."""
    return hmac.new(secret, b"twinbeat upgrade channel v1", hashlib.sha256).digest()


def sign(key: bytes, label: bytes, nonce: str, text: str) -> str:
    msg = label + b"\0" + nonce.encode() + b"\0" + text.encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def _line(text: str, key: bytes, label: bytes, nonce: str) -> bytes:
    return f"{text}\t{sign(key, label, nonce, text)}\n".encode()


def _verified(raw: bytes, key: bytes, label: bytes, nonce: str) -> dict[str, Any]:
    try:
        text, mac = raw.decode("ascii").rstrip("\n").rsplit("\t", 1)
    except (UnicodeDecodeError, ValueError):
        raise AgentError("not a signed message") from None
    if not hmac.compare_digest(mac, sign(key, label, nonce, text)):
        raise AgentError("the message is not signed with this cluster's key (authkeys differ?)")
    try:
        data = json.loads(text)
    except ValueError:
        raise AgentError("the signed message is not JSON") from None
    if not isinstance(data, dict):
        raise AgentError("the signed message is not an object")
    return data


class Stream:
    """Bounded line and block reads over a connected socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()

    def readline(self) -> bytes:
        while b"\n" not in self._buf:
            if len(self._buf) > MAX_LINE:
                raise AgentError("line too long")
            data = self.sock.recv(65536)
            if not data:
                raise AgentError("the connection closed")
            self._buf += data
        idx = self._buf.index(b"\n") + 1
        line = bytes(self._buf[:idx])
        del self._buf[:idx]
        return line

    def blocks(self, size: int) -> Any:
        """Yield exactly ``size`` bytes, in blocks."""
        left = size
        if self._buf:
            head = bytes(self._buf[:left])
            del self._buf[:len(head)]
            left -= len(head)
            yield head
        while left > 0:
            data = self.sock.recv(min(CHUNK, left))
            if not data:
                raise AgentError(f"the connection closed {left} bytes before the end")
            left -= len(data)
            yield data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


# -- the agent (the node that is asked) ---------------------------------------------------


@dataclass
class Reply:
    answer: dict[str, Any]
    after: Callable[[], None] | None = None  # run once the answer is sent (a reboot)


Handler = Callable[[Mapping[str, Any], Stream], Reply]


def serve_connection(sock: socket.socket, key: bytes, handlers: Mapping[str, Handler],
                     nonce: str | None = None) -> str:
    """Answer one request on a connected socket; returns what was asked (for the log)."""
    nonce = nonce or os.urandom(16).hex()
    stream = Stream(sock)
    stream.send(f"{GREETING} {nonce}\n".encode())
    try:
        request = _verified(stream.readline(), key, _LABEL_REQUEST, nonce)
    except AgentError as exc:
        stream.send(json.dumps({"ok": False, "error": f"refused: {exc}"}).encode() + b"\n")
        return f"refused a request: {exc}"
    if request.get("nonce") != nonce:
        stream.send(json.dumps({"ok": False, "error": "refused: a replayed request"}).encode()
                    + b"\n")
        return "refused a replayed request"
    cmd = str(request.get("cmd"))
    raw_args = request.get("args")
    args: dict[str, Any] = raw_args if isinstance(raw_args, dict) else {}
    handler = handlers.get(cmd)
    if handler is None:
        reply = Reply({"ok": False, "error": f"unknown request {cmd!r}"})
    else:
        try:
            reply = handler(args, stream)
        except (OSError, AgentError) as exc:
            reply = Reply({"ok": False, "error": f"{cmd}: {exc}"})
    stream.send(_line(json.dumps(reply.answer, sort_keys=True), key, _LABEL_ANSWER, nonce))
    if reply.after is not None:
        reply.after()
    return f"{cmd}: {'ok' if reply.answer.get('ok') else reply.answer.get('error')}"


def receive_bundle(args: Mapping[str, Any], stream: Stream, folder: Path) -> Reply:
    """``put``: the bundle's bytes, checked against the signed SHA-256, kept under its name
    (with NAME.sha256 beside it), or nothing kept."""
    name, size, digest = args.get("name"), args.get("size"), args.get("sha256")
    if not isinstance(name, str) or not BUNDLE_NAME.match(name):
        raise AgentError(f"not a bundle name: {name!r}")
    if type(size) is not int or size <= 0 or not isinstance(digest, str):
        raise AgentError("put needs a size and a sha256")
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < size + RESERVE:
        # the bytes are on their way: read them to keep the stream in step, keep nothing
        for _ in stream.blocks(size):
            pass
        return Reply({"ok": False, "error": f"no room for the bundle on {folder}: "
                      f"{free // 2**20} MiB free, {(size + RESERVE) // 2**20} MiB needed"})
    h = hashlib.sha256()
    try:
        with atomic_writer(folder / name, mode=0o600) as f:
            for block in stream.blocks(size):
                h.update(block)
                f.write(block)
            if h.hexdigest() != digest:
                raise AgentError(f"the bundle arrived damaged (SHA-256 {h.hexdigest()}, "
                                 f"expected {digest}); nothing was kept")
    except OSError as exc:
        return Reply({"ok": False, "error": f"writing {folder / name}: {exc}"})
    atomic_write(folder / f"{name}.sha256", f"{digest}  {name}\n", mode=0o600)
    return Reply({"ok": True, "name": name, "sha256": digest, "size": size})


def bundles_in(folder: Path) -> dict[str, str]:
    """{bundle name: sha256} of the complete bundles kept in ``folder``."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for path in folder.glob("*.raucb.sha256"):
            name = path.name[:-len(".sha256")]
            if BUNDLE_NAME.match(name) and (folder / name).is_file():
                found[name] = path.read_text(encoding="utf-8").split()[0]
    return found


def forget_bundles(folder: Path) -> list[str]:
    gone = []
    for name in bundles_in(folder):
        for p in (folder / name, folder / f"{name}.sha256"):
            p.unlink(missing_ok=True)
        gone.append(name)
    return gone


# -- the client (the node that asks) ------------------------------------------------------


@dataclass(frozen=True)
class Client:
    host: str
    key: bytes
    port: int = PORT
    connect_timeout: float = 10.0
    connector: Callable[[str, int, float], socket.socket] | None = None  # tests: a socketpair

    def _connect(self) -> socket.socket:
        if self.connector is not None:
            return self.connector(self.host, self.port, self.connect_timeout)
        try:
            return socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise AgentError(f"cannot reach the update agent at {self.host}:{self.port}: "
                             f"{exc.strerror or exc}") from None

    def call(self, cmd: str, args: Mapping[str, Any] | None = None, *, timeout: float = 60.0,
             body: Path | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """One request; the agent's answer (verified). ``body``: a file sent after it."""
        sock = self._connect()
        try:
            sock.settimeout(timeout)
            stream = Stream(sock)
            greeting = stream.readline().decode("ascii", "replace").split()
            if len(greeting) != 2 or greeting[0] != GREETING:
                raise AgentError(f"not an update agent at {self.host}:{self.port}")
            nonce = greeting[1]
            request = json.dumps({"cmd": cmd, "args": dict(args or {}), "nonce": nonce},
                                 sort_keys=True)
            stream.send(_line(request, self.key, _LABEL_REQUEST, nonce))
            if body is not None:
                total, sent = body.stat().st_size, 0
                with open(body, "rb") as f:
                    while block := f.read(CHUNK):
                        stream.send(block)
                        sent += len(block)
                        if progress is not None:
                            progress(sent, total)
            raw = stream.readline()
            if not raw.rstrip(b"\n").count(b"\t"):
                # an unsigned refusal: the agent could not authenticate us
                try:
                    err = json.loads(raw).get("error")
                except (ValueError, AttributeError):
                    err = raw[:200].decode("ascii", "replace")
                raise AgentError(f"the update agent at {self.host} says: {err}")
            return _verified(raw, self.key, _LABEL_ANSWER, nonce)
        except (OSError, TimeoutError) as exc:
            raise AgentError(f"the update agent at {self.host}:{self.port}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        finally:
            sock.close()


def copy_checked(src: Path, dest: Path, digest: str) -> str:
    """Copy ``src`` to ``dest`` (mode 0600, atomically), hashing it on the way: ``dest`` is
    kept only if the SHA-256 is ``digest`` ("" then), else nothing is (the reason). One
    pass over the bundle, not a copy and a second read to hash it."""
    h = hashlib.sha256()
    try:
        with atomic_writer(dest, mode=0o600) as f, open(src, "rb") as source:
            while block := source.read(CHUNK):
                h.update(block)
                f.write(block)
            if h.hexdigest() != digest:
                raise _Mismatch
    except _Mismatch:
        return f"{src} does not match the bundle's SHA-256 (nothing copied)"
    except OSError as exc:
        return f"copying to {dest}: {exc}"
    return ""


class _Mismatch(Exception):
    """Raised inside atomic_writer so that it removes what it wrote."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()
