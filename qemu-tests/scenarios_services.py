"""The data services on a replicated QEMU pair, proven with their own clients.

Both nodes are set up (node1 by its wizard, node2 by its seed) to serve a share over SMB and
NFS and a PostgreSQL database from the replicated disk: the group is IPaddr, drbddisk::r0,
Filesystem (/dev/drbd0 on /srv), smbd, nfs-server, postgresql@17-main and the demo page.

The observer on the public LAN is the client: psql inserts numbered rows, each committed on
its own; smbclient puts numbered files; the userspace NFS client (nfsclient.py, libnfs)
writes numbered files with FILE_SYNC writes and an fsync. Every operation is a new
connection to the floating address, retried with the next number when it fails, and each
records whether it was acknowledged. Three writers run at once through node1's power loss,
and again through node1's return (failback). Afterwards every acknowledged row and file
must be on the node that serves, with its content: acknowledged / present / lost per
service (lost must be 0), and the time from the kill to the first acknowledged operation on
the new owner.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from drbdpair import mounted, wait_in_sync
from pair import (
    DATABASE,
    DB_OWNER,
    DB_PASSWORD,
    FLOATING,
    MOUNT_POINT,
    NFS_EXPORT,
    SERVICE_UNITS,
    SHARE,
    SHARE_PASSWORD,
    SHARE_USER,
    Node,
    Pair,
    PairError,
    SharedPair,
    group_of,
)

HERE = Path(__file__).resolve().parent
SHARE_DIR = f"{MOUNT_POINT}/shares/{SHARE}"
OP_TIMEOUT = 40.0  # one client operation (connect, write, acknowledge)
PAUSE = 0.3  # between two operations of one writer
AFTER = 3  # acknowledged operations each writer needs on the new owner before it stops


def _save_services(pair: Pair, artifacts: Path) -> None:
    artifacts.mkdir(parents=True, exist_ok=True)
    for node in pair.nodes:
        with contextlib.suppress(Exception):
            (artifacts / f"{node.name}-services.txt").write_text(node.sh(
                "systemctl status --no-pager smbd nfs-server postgresql@17-main "
                "'twinbeat-prepare@*' 2>&1 | tail -n 80; ls -la /srv /srv/shares/data "
                "2>&1 | head -n 40", check=False, timeout=60)[1])


SHARED = SharedPair("tbqs-", replicate=True, services=True, save_extra=_save_services)


@dataclass
class Attempt:
    number: int
    start: float
    end: float
    ok: bool
    detail: str = ""


def content(service: str, n: int) -> str:
    """What operation n of a writer writes: a row's text or a file's content."""
    return f"{service} write {n} " + "x" * (n % 17)


@dataclass
class Writer:
    """One client writing numbered items through failovers, from the observer."""

    service: str
    pair: Pair
    workdir: Path
    attempts: list[Attempt] = field(default_factory=list)
    next_number: int = 1
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def command(self, n: int) -> tuple[list[str], dict[str, str]]:
        local = self.workdir / f"{self.service}-{n}.txt"
        local.write_text(content(self.service, n))
        if self.service == "postgresql":
            return (["psql", f"host={FLOATING} dbname={DATABASE} user={DB_OWNER} "
                     "connect_timeout=10", "-v", "ON_ERROR_STOP=1", "-qtAc",
                     f"INSERT INTO acked (n, v) VALUES ({n}, '{content(self.service, n)}')"],
                    {"PGPASSWORD": DB_PASSWORD})
        if self.service == "smb":
            return (["smbclient", f"//{FLOATING}/{SHARE}", "-U",
                     f"{SHARE_USER}%{SHARE_PASSWORD}", "-t", "20", "-c",
                     f"put {local} smb-{n}.txt"], {})
        return ([sys.executable, str(HERE / "nfsclient.py"), "put", FLOATING, NFS_EXPORT,
                 f"nfs-{n}.txt", str(local)], {})

    def once(self) -> Attempt:
        n = self.next_number
        self.next_number += 1
        argv, env = self.command(n)
        start = time.monotonic()
        try:
            r = subprocess.run([*self.pair.lab.wrapper, *argv], capture_output=True, text=True,
                               timeout=OP_TIMEOUT, check=False,
                               env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                                    **env})
            out = (r.stdout + r.stderr).strip()
            ok = r.returncode == 0 and "NT_STATUS_" not in out
            detail = "" if ok else (out.splitlines() or [f"exit {r.returncode}"])[-1][:160]
        except subprocess.TimeoutExpired:
            ok, detail = False, f"no answer within {OP_TIMEOUT:.0f} s"
        a = Attempt(n, start, time.monotonic(), ok, detail)
        self.attempts.append(a)
        return a

    def start(self) -> None:
        self.stop.clear()

        def loop() -> None:
            while not self.stop.is_set():
                self.once()
                self.stop.wait(PAUSE)

        self.thread = threading.Thread(target=loop, name=f"writer-{self.service}", daemon=True)
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(OP_TIMEOUT + 10)

    def acked(self) -> dict[int, str]:
        return {a.number: content(self.service, a.number) for a in self.attempts if a.ok}

    def acked_after(self, t: float) -> list[Attempt]:
        return [a for a in self.attempts if a.ok and a.start >= t]

    def first_ok_after(self, t: float) -> float | None:
        after = [a.end for a in self.attempts if a.ok and a.end > t]
        return min(after) - t if after else None


def fingerprint(service: str, text: str) -> str:
    """How `present` reports an item: a row's text, a file's SHA-256."""
    return text if service == "postgresql" else hashlib.sha256(text.encode()).hexdigest()


def present(node: Node, writer: Writer) -> dict[int, str]:
    """The items of `writer` that the serving node has: each row's text, each file's SHA-256
    (of its exact bytes)."""
    if writer.service == "postgresql":
        # (no pager: on the console psql pages a result taller than the screen through
        # `more`, which waits for RETURN; the failback's check hung there in a QEMU run)
        out = node.sh(f"runuser -u postgres -- psql -P pager=off -d {DATABASE} -tA -F '|' "
                      "-c 'SELECT n, v FROM acked ORDER BY n'", timeout=120)[1]
        rows: dict[int, str] = {}
        for line in out.splitlines():
            n, _, v = line.partition("|")
            if n.strip().isdigit():
                rows[int(n)] = v
        return rows
    prefix = "smb" if writer.service == "smb" else "nfs"
    # one sha256sum for all the files: a process per file (the shell loop with base64 this
    # replaces) cost minutes on a TCG guest once the failback's writers had put 700 files
    out = node.sh(f"cd {SHARE_DIR} && find . -maxdepth 1 -name '{prefix}-*.txt' "
                  "-exec sha256sum -- {} +", timeout=120)[1]
    files: dict[int, str] = {}
    for line in out.splitlines():
        m = re.fullmatch(rf"([0-9a-f]{{64}})  \./{prefix}-([0-9]+)\.txt", line.strip())
        if m:
            files[int(m.group(2))] = m.group(1)
    return files


def writers(pair: Pair, workdir: Path) -> list[Writer]:
    return [Writer(s, pair, workdir) for s in ("postgresql", "smb", "nfs")]


def run_through(pair: Pair, ws: list[Writer], event: float, deadline: float) -> None:
    """Let the writers run until each has AFTER acknowledged operations started after
    `event`, or until `deadline` (then stop them and report who did not make it)."""
    while time.monotonic() < deadline:
        if all(len(w.acked_after(event)) >= AFTER for w in ws):
            break
        time.sleep(1.0)
    for w in ws:
        w.halt()
    late = [w for w in ws if len(w.acked_after(event)) < AFTER]
    if late:
        last = {w.service: (w.attempts[-1].detail if w.attempts else "no attempt") for w in late}
        raise PairError(f"fewer than {AFTER} acknowledged operations on the new owner within "
                        f"{deadline - event:.0f} s for {', '.join(last)} (last errors: {last})")


def check_all(node: Node, ws: list[Writer]) -> list[str]:
    """Per writer: 'service acknowledged N, present N, lost 0'; raise when any is lost."""
    lines, lost_any = [], []
    start = time.monotonic()
    for w in ws:
        acked = w.acked()
        got = present(node, w)
        lost = sorted(n for n, text in acked.items() if got.get(n) != fingerprint(w.service, text))
        lines.append(f"{w.service}: {len(acked)} acknowledged, "
                     f"{len(acked) - len(lost)} present, {len(lost)} lost")
        if lost:
            lost_any.append(f"{w.service} lost {lost[:10]}")
    if lost_any:
        raise PairError(f"{node.name} lacks acknowledged writes: {'; '.join(lost_any)} "
                        f"({'; '.join(lines)})")
    return [*lines, f"checked on {node.name} in {time.monotonic() - start:.0f} s"]


def units_running(node: Node) -> dict[str, str]:
    out = node.sh("systemctl is-active " + " ".join(SERVICE_UNITS), check=False,
                  timeout=60)[1].split()
    return dict(zip(SERVICE_UNITS, out, strict=False))


def ready(pair: Pair, owner: str) -> None:
    wait_in_sync(pair, timeout=600)
    pair.wait_formed(owner, timeout=600)
    node = pair.node(owner)
    if mounted(node) != "/dev/drbd0":
        raise PairError(f"{owner} runs the group but {MOUNT_POINT} is {mounted(node)!r}")
    states = units_running(node)
    if set(states.values()) != {"active"}:
        raise PairError(f"{owner} runs the group but its data services are {states}")


_state: dict[str, object] = {}
SHARED.on_boot.append(_state.clear)


#: the failback scenario continues the power-loss one: after a failure the pair is kept
#: (repair says so) so that the failback says at once why it cannot run instead of booting
#: a new pair
@SHARED.scenario("services-smb-nfs-postgresql-survive-owner-power-loss-no-acked-write-lost",
                 repair=lambda pair: True, timeout=1200)
def services_power_loss(pair: Pair) -> str:
    n1, n2 = pair.node1, pair.node2
    ready(pair, "node1")
    cfg = n1.sh("cat /etc/twinbeat/cluster.toml", timeout=30)[1]
    for unit in SERVICE_UNITS:
        if unit not in cfg:
            raise PairError(f"node1's group has no {unit}")
    init = n1.sh("journalctl -b -o cat -u twinbeat-prepare@postgresql | grep -F "
                 "'initialised a new PostgreSQL cluster' | head -n 1", check=False,
                 timeout=60)[1].strip()
    if not init:
        raise PairError("node1 did not initialise the PostgreSQL cluster on the replicated disk")
    m = re.search(r" in ([0-9.]+) s$", init)
    initdb = f"{float(m.group(1)):.0f} s" if m else f"? ({init!r})"
    # (`ls` of two folders would print their names even when both are empty)
    own = n2.sh("find /var/lib/postgresql/17 /srv -mindepth 1 -maxdepth 1 2>/dev/null",
                check=False, timeout=30)[1].strip()
    if own:
        raise PairError(f"node2 has a PostgreSQL cluster or files in /srv of its own: {own}")
    n1.sh(f"runuser -u postgres -- psql -P pager=off -d {DATABASE} -qc 'CREATE TABLE IF NOT "
          "EXISTS acked (n int PRIMARY KEY, v text NOT NULL); "
          f"ALTER TABLE acked OWNER TO {DB_OWNER}'", timeout=120)
    probe = n1.status()
    g = group_of(probe)
    workdir = Path(tempfile.mkdtemp(prefix="tbqs-clients-"))
    atexit.register(shutil.rmtree, workdir, True)  # the clients' files, on every exit
    _state["workdir"] = workdir
    ws = writers(pair, workdir)
    _state["writers"] = ws
    for w in ws:
        w.start()
    warm = time.monotonic() + 300
    while not all(len(w.acked()) >= 3 for w in ws):
        if time.monotonic() > warm:
            for w in ws:
                w.halt()
            raise PairError("the clients could not write to node1: " + "; ".join(
                f"{w.service}: {w.attempts[-1].detail if w.attempts else 'no attempt'}"
                for w in ws))
        time.sleep(0.5)
    t_kill = n1.power_off()
    run_through(pair, ws, t_kill, t_kill + 400)
    n2.wait_status("running the group", lambda st: group_of(st)["local"] == "running",
                   timeout=60)
    lines = check_all(n2, ws)
    firsts = {w.service: w.first_ok_after(t_kill) for w in ws}
    _state["power_loss"] = firsts
    return (f"group on node1 ({g['local']}), PostgreSQL cluster initialised there on the "
            f"replicated disk in {initdb} (initdb and the database, at the group's first "
            f"start); node1 powered off: first acknowledged operation on node2 after "
            + ", ".join(f"{s} {t:.1f} s" for s, t in firsts.items() if t is not None)
            + "; " + "; ".join(lines))


@SHARED.scenario("services-failback-to-node1-keeps-every-acknowledged-write", timeout=1500)
def services_failback(pair: Pair) -> str:
    n1 = pair.node1
    ws = _state.get("writers")
    if not isinstance(ws, list):
        raise PairError("the power-loss scenario did not run before this one")
    for w in ws:
        w.start()
    t_on = time.monotonic()
    n1.power_on()
    ready_deadline = t_on + 900
    while True:
        try:
            st = n1.status()
            if group_of(st)["local"] == "running":
                break
        except Exception as e:  # (booting: the console may not answer yet)
            pair.log(f"node1 not ready yet: {e}")
        if time.monotonic() > ready_deadline:
            for w in ws:
                w.halt()
            raise PairError("node1 did not get the group back within 900 s")
        time.sleep(2.0)
    t_back = time.monotonic()
    run_through(pair, ws, t_back, t_back + 300)
    ready(pair, "node1")
    t_ready = time.monotonic()
    lines = check_all(n1, ws)
    gaps = {}
    for w in ws:
        oks = [a for a in w.attempts if a.ok and a.end > t_on]
        gap = max((b.end - a.end for a, b in itertools.pairwise(oks)), default=0.0)
        gaps[w.service] = gap
    return (f"node1 back and running the group {t_back - t_on:.0f} s after power-on, the "
            f"writers' {AFTER} operations there and the pair checked in sync "
            f"{t_ready - t_back:.0f} s later; longest "
            "gap between acknowledged operations during the failback: "
            + ", ".join(f"{s} {g:.1f} s" for s, g in gaps.items()) + "; " + "; ".join(lines))
