"""End-to-end replication scenarios on a second QEMU pair whose wizard and seed chose vdb as
the disk to replicate: the group is then IPaddr, drbddisk::r0, Filesystem (/dev/drbd0 on
/srv, ext4) and the web service, and DRBD (protocol C) mirrors vdb over the crossover link.

Runs after the scenarios of the shared pair (scenarios_pair.py), which has shut down by then,
so that only two VMs run at a time. Asserted from inside both guests (drbdadm, the files on
/srv, the kernel's DRBD messages) and from the observer (HTTP on the floating address).

The scenarios build on each other, in this order: the pair forms; the secondary loses power
and returns (only what changed meanwhile is resynchronised, and `twinbeat status` shows the
progress); the crossover cable is cut (node1's DRBD fence-peer handler has node2's replica
marked Outdated over the heartbeat links) and node1 dies: node2 refuses the stale data until
an administrator forces it; node1 returns with the cable healed: the two replicas diverged,
both nodes report the split brain, and `twinbeat resolve-split-brain --discard node1` on both
ends it; node1 gets the group back and loses power: node2 has every acknowledged write.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from drbdpair import drbd_state, mounted, save_drbd, settle, sha256s, wait_in_sync
from pair import DRBD_RES, MOUNT_POINT, Node, Pair, PairError, SharedPair, group_of

#: file name -> sha256 of every acknowledged write of the surviving history
_written: dict[str, str] = {}
FILES = 4  # files of 1 MiB each written on node1 before its power loss

SHARED = SharedPair("tbqr-", replicate=True, save_extra=save_drbd)
SHARED.on_boot.append(_written.clear)


def replication_scenario(name: str) -> Callable[[Callable[[Pair], str]], Callable[[Pair], str]]:
    """The scenarios build on each other: no baseline between them, and a failure ends the
    pair (the next one boots a new pair)."""
    return SHARED.scenario(name)


# --------------------------------------------------------------------------------------------


@replication_scenario("replicated-pair-forms-drbd-uptodate-both-sides-node1-mounts")
def replicated_forms(pair: Pair) -> str:
    start = time.monotonic()
    pair.wait_formed("node1", timeout=600)
    t_sync = settle(pair)
    # the initial full sync, node1 the source (once: a new pair), node2 the target
    initial = pair.node2.sh("dmesg | grep -F 'Resync done' | head -n 1", timeout=30)[1].strip()
    source = pair.node1.sh("journalctl -b -u twinbeat -o cat | grep -F 'source of the "
                           "initial full sync'", check=False, timeout=30)[1].strip()
    if not initial or not source:
        raise PairError(f"no initial full sync from node1 to node2 (node2's kernel: "
                        f"{initial!r}; node1's journal: {source!r})")
    cfg = pair.node1.sh("cat /etc/twinbeat/cluster.toml", timeout=30)[1]
    for want in (f"drbddisk::{DRBD_RES}", f"Filesystem::/dev/drbd0::{MOUNT_POINT}::ext4"):
        if want not in cfg:
            raise PairError(f"node1's group has no {want}")
    roles = {n.name: drbd_state(n)[0] for n in pair.nodes}
    if roles != {"node1": "Primary/Secondary", "node2": "Secondary/Primary"}:
        raise PairError(f"DRBD roles: {roles}")
    if mounted(pair.node1) != "/dev/drbd0" or mounted(pair.node2):
        raise PairError(f"{MOUNT_POINT}: node1 mounts {mounted(pair.node1)!r}, node2 "
                        f"{mounted(pair.node2)!r}")
    pair.wait_http("node1", timeout=120)
    text = pair.node1.sh("twinbeat status", timeout=60)[1]
    line = next((x for x in text.splitlines() if x.startswith(f"replication {DRBD_RES}:")), "")
    if "Primary/Secondary, Connected, disks UpToDate/UpToDate" not in line:
        raise PairError(f"node1's twinbeat status shows no healthy replication:\n{text}")
    bench = write_benchmark(pair.node1)
    t = pair.timings
    return (f"provisioned {t['provisioned']:.0f} s, logged in {t['logged_in']:.0f} s; formed "
            f"and Connected UpToDate/UpToDate {t_sync - start:.0f} s later; initial full sync "
            f"node1 -> node2: {initial.split('] ', 1)[-1]}; node1 Primary "
            f"with /dev/drbd0 on {MOUNT_POINT}, node2 Secondary; status: {line!r}; {bench}")


def _dd_rate(node: Node, path: str) -> float:
    """MB/s of a 32 MiB sequential direct write of `path`, as dd reports it."""
    out = node.sh(f"dd if=/dev/zero of={path} bs=1M count=32 oflag=direct conv=fsync 2>&1 "
                  f"| tail -n 1; rm -f {path}", timeout=300)[1]
    m = re.search(r"copied, ([\d.,]+) s", out)
    if not m:
        raise PairError(f"{node.name}: no dd figure in {out!r}")
    return 32 * 1.048576 / float(m.group(1).replace(",", "."))


def write_benchmark(node: Node) -> str:
    """Sequential write throughput through DRBD (a file on /srv, protocol C: each write is on
    both disks before it completes) vs the same on an ext4 on the VM's unreplicated third
    disk (vdc): absolute figures under TCG are slow, the ratio is what matters."""
    node.sh("mkfs.ext4 -q -F /dev/vdc && mkdir -p /mnt/raw && mount /dev/vdc /mnt/raw",
            timeout=300)
    try:
        raw = [_dd_rate(node, "/mnt/raw/bench.bin") for _ in range(2)]
        drbd = [_dd_rate(node, f"{MOUNT_POINT}/bench.bin") for _ in range(2)]
    finally:
        node.sh("umount /mnt/raw", check=False, timeout=60)
    r, d = max(raw), max(drbd)
    return (f"sequential direct write (32 MiB, best of 2): DRBD {d:.1f} MB/s, raw disk "
            f"{r:.1f} MB/s, ratio {d / r:.2f}")


def replica(node: Node) -> dict[str, Any]:
    """The r0 entry of `twinbeat status --json` (the events2 monitor's view)."""
    for r in node.status().get("replication") or []:
        if r["name"] == DRBD_RES:
            return dict(r)
    raise PairError(f"{node.name}: no replication {DRBD_RES} in twinbeat status")


def events2_stat(node: Node, key: str) -> int:
    """A peer-device statistic of r0 (KiB) from `drbdsetup events2 --now --statistics`."""
    out = node.sh(f"drbdsetup events2 --now --statistics {DRBD_RES}", timeout=60)[1]
    m = re.search(rf"exists peer-device .*\b{key}:(\d+)", out)
    if not m:
        raise PairError(f"{node.name}: no {key} in {out!r}")
    return int(m.group(1))


def write_files(node: Node, names: list[str], mib: int = 1) -> dict[str, str]:
    """Write `names` (random, fsync'ed: with protocol C on both disks when dd returns)."""
    node.sh(" && ".join(f"dd if=/dev/urandom of={MOUNT_POINT}/{n} bs=1M count={mib} "
                        "conv=fsync status=none" for n in names) + " && sync", timeout=300)
    sums = sha256s(node, names)
    if len(sums) != len(names):
        raise PairError(f"{node.name}: could not read back the files it wrote: {sums}")
    return sums


def journal_has(node: Node, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = node.sh(f"journalctl -b -u twinbeat --no-pager -o cat | grep -F {text!r} | "
                      "tail -n 1", check=False, timeout=60)[1].strip()
        if out:
            return out
        if time.monotonic() > deadline:
            raise PairError(f"{node.name}: the journal never said {text!r} within "
                            f"{timeout:.0f} s")
        time.sleep(2.0)


CHANGED_MIB = 48  # written on node1 while node2 is off


@replication_scenario("replicated-secondary-returns-resyncs-only-the-changed-blocks")
def replicated_secondary_returns(pair: Pair) -> str:
    n1, n2 = pair.node1, pair.node2
    settle(pair)
    n2.power_off()
    n1.sh(f"dd if=/dev/urandom of={MOUNT_POINT}/changed.bin bs=1M count={CHANGED_MIB} "
          "conv=fsync status=none", timeout=300)
    oos = n1.wait_status("counting node2's missing blocks", lambda st: any(
        (r.get("out_of_sync_kib") or 0) >= CHANGED_MIB * 1024 for r in st.get("replication")
        or []), timeout=60)
    missing = next(r for r in oos["replication"] if r["name"] == DRBD_RES)["out_of_sync_kib"]
    n2.power_on()
    # node1's status while node2 boots and resynchronises: keep the lines that show progress
    seen: list[str] = []
    deadline = time.monotonic() + 420
    while True:
        r = replica(n1)
        if r["syncing"] and r.get("sync_done_percent") is not None:
            seen.append(f"{r['replication']} {r['sync_done_percent']:.1f}% "
                        f"{r['out_of_sync_kib']} KiB to go, rate {r['sync_rate_kib_s']} KiB/s, "
                        f"eta {r['sync_eta_s']} s")
        if r["connection"] == "Connected" and r["disk"] == r["peer_disk"] == "UpToDate" \
                and not r["syncing"]:
            break
        if time.monotonic() > deadline:
            raise PairError(f"node1: node2 did not come back in sync within 420 s: {r}")
        time.sleep(0.5)
    wait_in_sync(pair, timeout=120)
    received = events2_stat(n2, "received")
    done = n1.sh("dmesg | grep -F 'Resync done' | tail -n 1", timeout=30)[1].strip()
    disk_kib = 262100
    if received > max(2 * missing, missing + 8192) or received > disk_kib // 2:
        raise PairError(f"node2 received {received} KiB to resynchronise {missing} KiB of "
                        f"changes (disk {disk_kib} KiB): more than the changed blocks")
    return (f"{CHANGED_MIB} MiB written on node1 while node2 was off: node1 counted "
            f"{missing} KiB out of sync; node2 came back and received {received} KiB "
            f"({100 * received / disk_kib:.1f}% of the {disk_kib} KiB disk); node1's status "
            "during the resync: "
            + (f"{seen[0]} ... {seen[-1]} ({len(seen)} samples)" if seen else
               "not caught (the resync is over in seconds; shown by the unit tests)")
            + f"; kernel: {done.split('] ', 1)[-1]}")


@replication_scenario("replicated-crossover-cut-outdates-node2-which-refuses-then-forced")
def replicated_crossover_cut(pair: Pair) -> str:
    n1, n2 = pair.node1, pair.node2
    settle(pair)
    before = write_files(n1, ["before-cut.bin"])
    _written.update(before)
    t_cut = time.monotonic()
    pair.set_crossover(False)
    # node1's DRBD loses node2, its fence-peer handler asks node2 over serial/public
    deadline = time.monotonic() + 120
    while drbd_state(n2)[2].split("/")[0] != "Outdated":
        if time.monotonic() > deadline:
            raise PairError(f"node2's replica was not marked Outdated within 120 s of the "
                            f"cut: {drbd_state(n2)}")
        time.sleep(1.0)
    t_outdated = time.monotonic()
    fence = n1.status().get("fencing") or {}
    last = (fence.get("last") or {}).get("message", "")
    if "4" not in last and "outdated" not in last.lower():
        raise PairError(f"node1's last fence-peer outcome: {fence}")
    after = write_files(n1, ["after-cut.bin"])
    if n1.status()["peer"]["state"] != "alive":
        raise PairError("node1 lost node2 although serial and public still beat")
    t_kill = n1.power_off()
    refusal = journal_has(n2, "refusing to promote DRBD resource r0: the local disk is "
                              "Outdated", timeout=180)
    if pair.http_owner(timeout=2.0) is not None:
        raise PairError(f"someone serves after node1's death: {pair.http_owner()}")
    t_refused = time.monotonic()
    n2.wait_status("marking the group failed", lambda st: group_of(st)["failed"], timeout=120)
    out = n2.sh("twinbeat takeover --force-data service --yes", timeout=300)[1]
    if "missing here" not in out:
        raise PairError(f"takeover --force-data did not say what may be lost: {out!r}")
    t_http = pair.wait_http("node2", timeout=240)
    got = sha256s(n2, ["before-cut.bin", "after-cut.bin"])
    if got.get("before-cut.bin") != before["before-cut.bin"]:
        raise PairError("node2 lacks the file written before the cut")
    if "after-cut.bin" in got:
        raise PairError("node2 has the file node1 wrote after the cut: it was not stale?")
    _written.pop("after-cut.bin", None)
    del after
    _written.update(write_files(n2, ["node2-forced.bin"]))
    return (f"crossover cut: node2's replica Outdated {t_outdated - t_cut:.1f} s later "
            f"(node1: {last!r}); node1 wrote after-cut.bin and died; node2 refused "
            f"({t_refused - t_kill:.0f} s after the kill: {refusal[:90]!r}...) and served "
            f"nothing; `takeover --force-data` said what is lost and node2 served HTTP "
            f"{t_http - t_refused:.0f} s later without after-cut.bin")


@replication_scenario("replicated-split-brain-detected-on-both-and-resolved-by-hand")
def replicated_split_brain(pair: Pair) -> str:
    n1, n2 = pair.node1, pair.node2
    pair.heal()
    t_on = time.monotonic()
    n1.power_on()
    # node1 wrote after the cut and node2 was forced Primary and wrote: diverged replicas
    for node in (n2, n1):
        node.wait_status("reporting the split brain", lambda st: any(
            r.get("split_brain") for r in st.get("replication") or []), timeout=420)
    t_seen = time.monotonic()
    text = n2.sh("twinbeat status", timeout=60)[1]
    if "SPLIT BRAIN" not in text:
        raise PairError(f"node2's twinbeat status does not say SPLIT BRAIN:\n{text}")
    j1 = journal_has(n1, "SPLIT BRAIN detected", timeout=60)
    if pair.http_owner(timeout=2.0) != "node2":
        raise PairError(f"during the split brain the service moved: {pair.http_owner()}")
    out1 = n1.sh("twinbeat resolve-split-brain --discard node1 --yes", timeout=300)[1]
    out2 = n2.sh("twinbeat resolve-split-brain --discard node1 --yes", timeout=300)[1]
    if "DISCARDING this node's (node1) changes" not in out1 or "overwritten" not in out2:
        raise PairError(f"resolve-split-brain said:\n{out1}\n{out2}")
    t_sync = wait_in_sync(pair, timeout=600)
    for node in (n1, n2):
        node.wait_status("clearing the split brain", lambda st: not any(
            r.get("split_brain") for r in st.get("replication") or []), timeout=60)
    pair.wait_http("node2", timeout=120)  # node2 serves the surviving history
    return (f"node1 powered on {t_seen - t_on:.0f} s before both reported SPLIT BRAIN "
            f"(journal: {j1[:70]!r}); resolve-split-brain --discard node1 on both: "
            f"Connected UpToDate/UpToDate {t_sync - t_seen:.0f} s later, node2 serving")


@replication_scenario("replicated-owner-power-loss-node2-has-every-acknowledged-write")
def replicated_power_loss(pair: Pair) -> str:
    n1, n2 = pair.node1, pair.node2
    wait_in_sync(pair, timeout=300)
    if group_of(n2.status())["local"] == "running":
        # after the split brain node2 serves (pinned by the forced takeover): node1 back
        n2.sh("twinbeat standby service", timeout=60)
    settle(pair)
    earlier = sha256s(n1, [*sorted(_written), "after-cut.bin"]) if _written else {}
    if "after-cut.bin" in earlier:
        raise PairError("node1 still has after-cut.bin: its side of the split brain was "
                        "not discarded")
    if any(earlier.get(n) != h for n, h in _written.items()):
        raise PairError(f"node1 serves different data than the surviving history: "
                        f"{earlier} vs {_written}")
    names = [f"acked-{i}.bin" for i in range(FILES)]
    # each file is written and fsync'ed (conv=fsync): with protocol C, dd returning means
    # the blocks are on node2's disk too
    _written.update(write_files(n1, names))
    t_kill = n1.power_off()
    t_http = pair.wait_http("node2", timeout=180)
    st = n2.wait_status("running the group", lambda st: group_of(st)["local"] == "running",
                        timeout=60)
    del st
    role = drbd_state(n2)
    if not role[0].startswith("Primary") or mounted(n2) != "/dev/drbd0":
        raise PairError(f"node2 after the takeover: DRBD {role}, {MOUNT_POINT} from "
                        f"{mounted(n2)!r}")
    got = sha256s(n2, list(_written))
    if got != _written:
        bad = sorted(n for n in _written if got.get(n) != _written[n])
        raise PairError(f"node2 does not have node1's acknowledged writes: {bad} differ or "
                        "are missing")
    return (f"node1 served the surviving data (no after-cut.bin); {FILES} files (1 MiB "
            f"each, fsync'ed) written on node1, node1 powered off: node2 Primary ({role[2]}), "
            f"served HTTP {t_http - t_kill:.1f} s after the kill, all {len(_written)} files "
            "identical (sha256)")
