"""DRBD on the QEMU pair, read from inside both guests: the state of r0, waiting for it to be
in sync, what /srv holds, and a DRBD split brain resolved as an administrator would.

Used by the replication scenarios (scenarios_replication.py), and by the pair scenarios
(scenarios_pair.py) when their pair replicates."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

from pair import DRBD_RES, MOUNT_POINT, Node, Pair, PairError
from vm import VMError


def save_drbd(pair: Pair, artifacts: Path) -> None:
    """drbdadm status, /proc/drbd and the kernel's DRBD lines of both nodes, into artifacts."""
    artifacts.mkdir(parents=True, exist_ok=True)
    for node in pair.nodes:
        with contextlib.suppress(Exception):
            (artifacts / f"{node.name}-drbd.txt").write_text(
                node.sh("drbdadm status; cat /proc/drbd; dmesg | grep -i drbd | tail -n 80",
                        check=False, timeout=30)[1])


def drbd_state(node: Node) -> tuple[str, str, str]:
    """(role, connection state, disk states) of r0 on `node`, as drbdadm prints them;
    ("-", "Unconfigured", "-") while the resource is not up (the supervisor brings it up
    when it starts)."""
    out = node.sh(f"for w in role cstate dstate; do if x=$(drbdadm $w {DRBD_RES} 2>/dev/null); "
                  "then echo \"$x\" | tail -n 1; else echo -; fi; done", timeout=120)[1].split()
    if len(out) != 3:
        raise PairError(f"{node.name}: unreadable DRBD state {out}")
    if out[1] == "-":
        return "-", "Unconfigured", "-"
    return out[0], out[1], out[2]


def in_sync(states: dict[str, tuple[str, str, str]]) -> bool:
    return all(s[1] == "Connected" and s[2] == "UpToDate/UpToDate" for s in states.values())


def wait_in_sync(pair: Pair, timeout: float) -> float:
    """Both nodes Connected and UpToDate/UpToDate; return when that was seen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            states = {n.name: drbd_state(n) for n in pair.nodes}
        except VMError as e:  # the command or the re-login timed out
            # seen twice under TCG: a node's serial console stops answering for over 120 s
            # while a full resync runs; the shell logs in again on the next call
            if time.monotonic() > deadline:
                raise PairError(f"DRBD state unreadable within {timeout:.0f} s: {e}") from e
            pair.log(f"console not answering during the resync: {e}")
            time.sleep(5.0)
            continue
        if in_sync(states):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise PairError(f"DRBD not Connected UpToDate/UpToDate on both nodes within "
                            f"{timeout:.0f} s: {states}")
        time.sleep(1.0)


def mounted(node: Node) -> str:
    return node.sh(f"findmnt -n -o SOURCE {MOUNT_POINT}", check=False, timeout=30)[1].strip()


def settle(pair: Pair, owner: str = "node1", timeout: float = 300) -> float:
    """In sync, `owner` running the group with /dev/drbd0 on /srv and answering HTTP: the
    state a scenario writes in. (Under TCG a node that is the source of a resync can miss
    its ping node for ping_timeout and release the group for a while, seen in a CI run:
    writing then would land on the unmounted /srv.)"""
    t = wait_in_sync(pair, timeout=timeout)
    pair.wait_formed(owner, timeout=timeout)
    pair.wait_http(owner, timeout=120)
    node = pair.node(owner)
    if mounted(node) != "/dev/drbd0":
        raise PairError(f"{owner} runs the group but {MOUNT_POINT} is {mounted(node)!r}")
    return t


def sha256s(node: Node, names: list[str]) -> dict[str, str]:
    """sha256 of the files in `names` that exist on `node`'s /srv (missing ones are left
    out of the answer)."""
    # in a subshell: a console shell left in the mount point is killed when it is unmounted
    out = node.sh(f"(cd {MOUNT_POINT} && sha256sum {' '.join(names)}) 2>/dev/null", timeout=60,
                  check=False)[1]
    sums = {}
    for line in out.splitlines():
        m = re.fullmatch(r"([0-9a-f]{64})\s+\*?(\S+)", line.strip())
        if m:
            sums[m.group(2)] = m.group(1)
    return sums


def split_brain_reported(node: Node) -> bool:
    """Whether `twinbeat status` on `node` reports a DRBD split brain of any resource."""
    return any(r.get("split_brain") for r in node.status().get("replication") or [])


def after_reconnect(pair: Pair, discard: str, timeout: float = 300.0) -> str:
    """Once the replication link is back after both nodes ran a group alone: DRBD either
    resynchronises by itself, or both nodes report a split brain (two Primaries, or a Primary
    cut off while the other was promoted: DRBD's policy here is to disconnect and wait for
    an administrator), which is resolved as the administrator would, keeping the data of
    the node that served: `twinbeat resolve-split-brain --discard DISCARD` on both, the
    victim first. Returns what happened, for the scenario's detail line."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        states = {n.name: drbd_state(n) for n in pair.nodes}
        if in_sync(states):
            return f"DRBD resynchronised by itself {time.monotonic() - t0:.0f} s after the heal"
        if all(split_brain_reported(n) for n in pair.nodes):
            break
        if time.monotonic() > deadline:
            raise PairError(f"DRBD neither in sync nor reporting a split brain on both nodes "
                            f"within {timeout:.0f} s of the heal: {states}")
        time.sleep(2.0)
    t_seen = time.monotonic()
    victim = pair.node(discard)
    for node in (victim, pair.peer(victim)):
        out = node.sh(f"twinbeat resolve-split-brain --discard {discard} --yes", timeout=300)[1]
        pair.log(f"{node.name}: resolve-split-brain --discard {discard}: {out.strip()}")
    t_sync = wait_in_sync(pair, timeout=timeout)
    for node in pair.nodes:
        node.wait_status("clearing the split brain",
                         lambda st: not any(r.get("split_brain")
                                            for r in st.get("replication") or []), timeout=60)
    return (f"DRBD split brain on both {t_seen - t0:.0f} s after the heal, resolved by hand "
            f"(--discard {discard}): in sync {t_sync - t_seen:.0f} s later")
