"""End-to-end replication scenarios on a second QEMU pair whose wizard and seed chose vdb as
the disk to replicate: the group is then IPaddr, drbddisk::r0, Filesystem (/dev/drbd0 on
/srv, ext4) and the web service, and DRBD (protocol C) mirrors vdb over the crossover link.

Runs after the scenarios of the shared pair (scenarios_pair.py), which has shut down by then,
so that only two VMs run at a time. The pair boots through OVMF and GRUB (each power-on too),
and the update scenarios (scenarios_update.py) go on with it after these. Asserted from
inside both guests (drbdadm, the files on /srv, the kernel's DRBD messages) and from the
observer (HTTP on the floating address).

The scenarios build on each other, in this order: the pair forms; the secondary loses power
and returns (only what changed meanwhile is resynchronised, and `twinbeat status` shows the
progress); the crossover cable is cut (node1's DRBD fence-peer handler has node2's replica
marked Outdated over the heartbeat links) and node1 dies: node2 refuses the stale data until
an administrator forces it; node1 returns with the cable healed: the two replicas diverged,
both nodes report the split brain, and `twinbeat resolve-split-brain --discard node1` on both
ends it; node1 gets the group back and loses power: node2 has every acknowledged write.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from drbdpair import drbd_state, mounted, save_drbd, settle, sha256s, wait_in_sync
from pair import DRBD_RES, MOUNT_POINT, Node, Pair, PairError, SharedPair, group_of
from updatebundles import bundles_drive
from vm import VMError

#: file name -> sha256 of every acknowledged write of the surviving history
_written: dict[str, str] = {}
FILES = 4  # files of 1 MiB each written on node1 before its power loss

# Booted through the real boot loader (OVMF, GRUB's A/B choice): the update scenarios
# (scenarios_update.py) go on with this pair after the scenarios below, and an update
# boots the other slot through GRUB. The bundles' disk is attached from the start.
SHARED = SharedPair("tbqr-", replicate=True, save_extra=save_drbd, firmware="uefi",
                    extra_args=bundles_drive)
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
    # A write right after the cut: DRBD (fencing resource-and-stonith) freezes node1's I/O
    # from the moment it notices the lost link (ping-int 1 s + ping-timeout 1 s) until its
    # fence-peer handler had node2's replica marked Outdated over serial/public, so the
    # write is acknowledged only once node2 knows its replica is stale.
    out = n1.sh(f"a=$(date +%s%N); dd if=/dev/urandom of={MOUNT_POINT}/during-cut.bin "
                "bs=1M count=1 conv=fsync status=none; b=$(date +%s%N); "
                "echo STALL $(( (b - a) / 1000000 ))", timeout=180)[1]
    m = re.search(r"STALL\s+(\d+)", out)
    if m is None:
        raise PairError(f"cannot time the write after the cut: {out!r}")
    stall = int(m.group(1)) / 1000
    t_acked = time.monotonic()
    if drbd_state(n2)[2].split("/")[0] != "Outdated":
        raise PairError(f"node1 acknowledged a write after the cut ({stall:.1f} s) but "
                        f"node2's replica is not Outdated: {drbd_state(n2)}")
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
    got = sha256s(n2, ["before-cut.bin", "after-cut.bin", "during-cut.bin"])
    if got.get("before-cut.bin") != before["before-cut.bin"]:
        raise PairError("node2 lacks the file written before the cut")
    if "after-cut.bin" in got or "during-cut.bin" in got:
        raise PairError("node2 has a file node1 wrote after the cut: it was not stale?")
    _written.pop("after-cut.bin", None)
    del after
    _written.update(write_files(n2, ["node2-forced.bin"]))
    return (f"crossover cut: node2's replica Outdated {t_outdated - t_cut:.1f} s later "
            f"(checked {t_acked - t_cut:.1f} s after the cut, when node1's first write "
            f"returned: that write stalled {stall:.2f} s, frozen until node2 was outdated; "
            f"node1: {last!r}); node1 wrote after-cut.bin and died; node2 refused "
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
    # one command, on node2 only: it carries the decision to node1 over the heartbeat links,
    # both halves run, and it follows the resync until both are in sync
    t_cmd = time.monotonic()
    code, out2 = n2.sh("twinbeat resolve-split-brain --discard node1 --yes --wait 600",
                       timeout=700, check=False)
    if code != 0 or "overwritten" not in out2 or "r0 on node1: done" not in out2 \
            or "resolved: Connected, UpToDate/UpToDate on both nodes" not in out2:
        raise PairError(f"resolve-split-brain on node2 (exit {code}) said:\n{out2}")
    j_victim = journal_has(n1, "resolve-split-brain asked by node2: r0: DISCARDING", 60)
    progress = [line for line in out2.splitlines() if "Sync" in line and "KiB/s" in line]
    t_sync = wait_in_sync(pair, timeout=600)
    for node in (n1, n2):
        node.wait_status("clearing the split brain", lambda st: not any(
            r.get("split_brain") for r in st.get("replication") or []), timeout=60)
    pair.wait_http("node2", timeout=120)  # node2 serves the surviving history
    return (f"node1 powered on {t_seen - t_on:.0f} s before both reported SPLIT BRAIN "
            f"(journal: {j1[:70]!r}); `resolve-split-brain --discard node1` on node2 only "
            f"(node1: {j_victim[:60]!r}...): Connected UpToDate/UpToDate "
            f"{t_sync - t_cmd:.0f} s later, node2 serving; progress lines: "
            + (f"{progress[0]} ... {progress[-1]}" if progress else "none (resync too short)"))


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


RESYNC_MIB = 128  # written on node2 while node1 is off: a resync long enough to watch


@replication_scenario("replicated-old-owner-returns-during-resync-no-failback-until-uptodate")
def replicated_failback_waits_for_the_data(pair: Pair) -> str:
    """node1 comes back while node2 serves and node1's replica must be resynchronised: the
    group stays on node2 (auto failback waits, node1's status says why) until node1's
    replica is UpToDate on both sides; the observer's HTTP requests are answered all along
    until the handover."""
    n1, n2 = pair.node1, pair.node2
    if n1.running:  # run alone (-k): make node2 the owner with node1 off first
        settle(pair)
        n1.power_off()
        pair.wait_http("node2", timeout=240)
    n2.wait_status("running the group", lambda st: group_of(st)["local"] == "running",
                   timeout=120)
    n2.sh(f"dd if=/dev/urandom of={MOUNT_POINT}/resync.bin bs=1M count={RESYNC_MIB} "
          "conv=fsync status=none", timeout=600)
    _written.update(sha256s(n2, ["resync.bin"]))
    probes: list[tuple[float, str | None]] = []
    stop = threading.Event()

    def probe() -> None:  # the observer asks for the page every 0.5 s meanwhile
        while not stop.is_set():
            probes.append((time.monotonic(), pair.http_owner(timeout=1.0)))
            stop.wait(0.5)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        n1.power_on()
        t_on = time.monotonic()
        n1.need_shell()
        behind_seen = ""
        last_behind = t_on
        deadline = t_on + 900
        while not any(owner == "node1" for _t, owner in probes):
            with contextlib.suppress(VMError, PairError):
                # one status a round (the replica and the group's reason from the same
                # answer): a status on a TCG guest's console takes seconds, and the resync
                # after the start-up's clean-up may last only a few
                st = n1.status(timeout=15)
                r = next((dict(x) for x in st.get("replication") or []
                          if x["name"] == DRBD_RES), None)
                if r is not None and not (r["disk"] == r["peer_disk"] == "UpToDate"
                                          and r["connection"] == "Connected"
                                          and not r["syncing"]):
                    last_behind = time.monotonic()
                    reason = group_of(st)["reason"]
                    if "stays on node2 until it is UpToDate" in reason:
                        behind_seen = behind_seen or reason
            if time.monotonic() > deadline:
                raise PairError(f"node1 did not get the group back within 900 s: "
                                f"{replica(n1)}")
            time.sleep(0.5)
    finally:
        stop.set()
        prober.join(timeout=10)
    t_back = next(t for t, owner in probes if owner == "node1")
    before = [(t, owner) for t, owner in probes if t < t_back]
    answered = sum(1 for _t, owner in before if owner == "node2")
    # the handover (node2 stops the group, node1 starts it) begins after node2's last answer:
    # a probe missed before that is one the resync cost the clients
    t_last2 = max((t for t, owner in before if owner == "node2"), default=t_on)
    missed = [t - t_on for t, owner in before if owner is None and t < t_last2]
    handover = t_back - t_last2
    wait_in_sync(pair, timeout=120)
    if not behind_seen:
        raise PairError("node1's status never said why the group stayed on node2 during the "
                        "resync")
    if len(missed) > 3:  # a busy 1-vCPU guest may miss a 1 s deadline now and then
        raise PairError(f"the service was down during the resync: {len(missed)} of "
                        f"{len(missed) + answered} HTTP probes unanswered while node2 owned the "
                        f"group (at {', '.join(f'{x:.0f}' for x in missed[:20])} s after "
                        "node1's power-on)")
    if handover > 60:
        raise PairError(f"the handover to node1 took {handover:.0f} s (last answer from node2 "
                        "to the first from node1)")
    got = sha256s(n1, ["resync.bin"])
    if got.get("resync.bin") != _written["resync.bin"]:
        raise PairError("node1 serves without the data node2 wrote while it was off")
    return (f"node1 powered on; {RESYNC_MIB} MiB to resync: the group stayed on node2 "
            f"({answered} HTTP probes answered by node2, {len(missed)} unanswered before the "
            f"handover, which took {handover:.1f} s from node2's last answer to node1's first) "
            f"until node1 was in sync (last seen behind {last_behind - t_on:.0f} s "
            f"after power-on), node1 served {t_back - t_on:.0f} s after power-on with node2's "
            f"data; node1 said: {behind_seen[:120]!r}")


# The update scenarios go on with this pair: registered right after the ones above.
import scenarios_update  # noqa: E402,F401
