"""Updates of a replicated pair through the real boot loader (OVMF, GRUB's A/B choice, RAUC).

They go on with the replicated pair of scenarios_replication.py (booted once through OVMF
and GRUB, node1 configured by its wizard and node2 by a seed, vdb replicated by DRBD) after
its own scenarios have left it whole and in sync, in this order:

1. ``twinbeat upgrade`` of version N (the image under test) to N+1 while the observer asks
   the floating address for the demo page twice a second: both nodes end on N+1, each still
   itself (machine ID, host name, SSH host key, cluster.toml, authkeys, TLS key) on slot B, the data
   on /srv intact, and the only gaps in the answers are the planned handover and the
   failback that auto_failback asks for (their lengths are reported);
2. a broken N+2 (its supervisor never starts) installed on node2 with ``twinbeat install``:
   node2 boots it (slot A), its boot check fails, it marks the slot bad and goes back to
   N+1 (slot B) by itself, says so in ``twinbeat status`` and rejoins; node1 answers
   throughout.

The bundles (``make update-bundles``: images/twinbeat-<N+1>.raucb and
twinbeat-<N+2>-broken.raucb, N+1 and N+2 bump the image's last number) reach both nodes on
a small read-only ext4 disk made on the host (as from a USB stick: updatebundles.py);
``twinbeat upgrade`` copies N+1 to the peer over the crossover link itself.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from drbdpair import save_drbd, settle, sha256s  # noqa: E402
from guest import FAST_STATUS_PATH  # noqa: E402
from pair import FLOATING, PAGE_RE, Node, Pair, PairError  # noqa: E402
from scenarios_replication import SHARED, write_files  # noqa: E402
from updatebundles import bumped, bundles_of, missing  # noqa: E402
from vm import VMError  # noqa: E402

BOOT_TIMEOUT = 900.0
PLAN = "/persist/lifecycle/upgrade.json"  # twinbeat upgrade's plan on the node running it


def save_update(pair: Pair, artifacts: Path) -> None:
    """DRBD's state (save_drbd), and the upgrade's log and plan on node1 (the journal of its
    boot before the last is not in the pair's artifacts)."""
    save_drbd(pair, artifacts)
    with contextlib.suppress(Exception):
        (artifacts / "node1-upgrade.txt").write_text(pair.node1.sh(
            f"cat /root/upgrade.log {PLAN}; journalctl -u twinbeat-upgrade -u "
            "twinbeat-boot-check --no-pager -o short-monotonic | tail -n 300",
            check=False, timeout=120)[1])
    with contextlib.suppress(Exception):
        (artifacts / "node2-boot-check.txt").write_text(pair.node2.sh(
            "twinbeat status; journalctl -u twinbeat-boot-check -u twinbeat-upgrade-agent "
            "--no-pager -o short-monotonic | tail -n 300", check=False, timeout=120)[1])


# The update scenarios go on with the replicated pair (scenarios_replication.SHARED: booted
# through OVMF and GRUB, the bundles' disk attached), after its own scenarios:
# scenarios_replication imports this module at its end, so that these are registered next.
SHARED.save_extra = save_update
#: what the rolling upgrade left for the broken-version scenario
_state: dict[str, Any] = {}
SHARED.on_boot.append(_state.clear)


# --------------------------------------------------------------------------------------------
# The pair: a rolling upgrade, then a broken version on one node


class Prober:
    """The observer asks the floating address for the demo page every INTERVAL seconds, in
    a thread inside the lab's namespace; ``answers`` is [(time.monotonic(), node or None)].
    An answer slower than 5 s counts as none (a TCG guest under a resync can be slow to
    answer without anything having moved)."""

    INTERVAL = 0.5

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.answers: list[tuple[float, str | None]] = []
        self._stop = False
        self._thread = pair.lab.thread(self._run, "http-prober")

    def _run(self) -> None:
        import http.client

        while not self._stop:
            t = time.monotonic()
            owner: str | None = None
            conn = http.client.HTTPConnection(FLOATING, 80, timeout=5.0)
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                m = PAGE_RE.search(resp.read().decode(errors="replace"))
                owner = m.group(1) if m and resp.status == 200 else None
            except (OSError, http.client.HTTPException):
                owner = None
            finally:
                conn.close()
            self.answers.append((t, owner))
            time.sleep(max(0.0, self.INTERVAL - (time.monotonic() - t)))

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(timeout=10)

    def gaps(self) -> list[tuple[str | None, str | None, float]]:
        """Every run of unanswered probes: (who answered before, who after, length in s
        from the last answer before to the first answer after)."""
        out: list[tuple[str | None, str | None, float]] = []
        last: tuple[float, str | None] | None = None
        missing = False
        for t, owner in self.answers:
            if owner is None:
                missing = True
                continue
            if missing and last is not None:
                out.append((last[1], owner, t - last[0]))
            elif last is not None and last[1] != owner:
                out.append((last[1], owner, t - last[0]))  # moved between two probes
            missing = False
            last = (t, owner)
        return out

    def owners(self) -> list[str | None]:
        seq: list[str | None] = []
        for _, owner in self.answers:
            if owner is not None and (not seq or seq[-1] != owner):
                seq.append(owner)
        return seq


def identity_of(node: Node) -> dict[str, str]:
    """What makes the node itself: machine ID, host name, SSH host key, cluster.toml,
    authkeys, its TLS key and certificate."""
    text = node.sh("cat /etc/machine-id /etc/hostname /etc/ssh/host-keys/ssh_host_ed25519_key.pub"
                   "; sha256sum /etc/twinbeat/cluster.toml /etc/twinbeat/authkeys "
                   "/etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem"
                   )[1]
    return {"text": text.strip()}


def versions(node: Node) -> dict[str, Any]:
    v: dict[str, Any] = node.status(cli=True)["versions"]
    return v


def mount_bundles(node: Node) -> None:
    node.sh("mkdir -p /mnt/b && (mountpoint -q /mnt/b || mount -o ro LABEL=BUNDLES /mnt/b)")


def poll(pair: Pair, node: Node, what: str, command: str, done: Callable[[str], bool],
         timeout: float, every: float = 10.0,
         seen: Callable[[str], None] | None = None) -> str:
    """Run `command` on `node` until done(its output); a node that reboots meanwhile (its
    console does not answer) is waited for."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            last = node.sh(command, timeout=120, check=False)[1]
            if seen is not None:
                seen(last)
            if done(last):
                return last
        except (VMError, PairError) as e:
            pair.log(f"{node.name}: not answering while waiting for {what}: {e}")
            if node.shell is not None:
                node.shell.logged_in = False
        if time.monotonic() > deadline:
            raise PairError(f"{node.name}: not {what} within {timeout:.0f} s; last:\n{last}")
        time.sleep(every)


UPGRADE = "update-pair-rolling-upgrade-n-to-n+1-one-planned-handover-data-intact"


# (long by design: two RAUC installs and two reboots with their health checks and resyncs
# under TCG; the pair's boot is not counted here)
@SHARED.scenario(UPGRADE, timeout=3600.0)
def rolling_upgrade(pair: Pair) -> str:
    n0 = pair.image.name[len("twinbeat-"):-len(".raw")]
    n1 = bumped(pair.image, 1)
    absent = missing(pair.image)
    if absent:
        raise AssertionError(f"{', '.join(map(str, absent))}: missing "
                             "(make update-bundles first)")
    good, _ = bundles_of(pair.image)
    node1 = pair.node1
    settle(pair, "node1", timeout=900)
    for node in pair.nodes:
        v = versions(node)
        assert (v["release"], v["peer_release"], v["mixed"]) == (n0, n0, False), v
    mount_bundles(node1)
    names = [f"before-upgrade-{i}" for i in range(3)]
    sums = write_files(node1, names, mib=2)
    identity = {n.name: identity_of(n) for n in pair.nodes}

    # N -> N+1 on both, run from the serving node (it reboots itself in the middle)
    mixed_seen: list[str] = []  # `twinbeat status` while the versions differed
    mixed_unsaid: list[str] = []  # the same when it did not say MIXED VERSIONS
    steps: dict[str, float] = {}  # step -> seconds after the start when first seen
    with Prober(pair) as probe:
        t0 = time.monotonic()
        # (a unit of its own: off the console's session, and a command line that ends in
        # "&" cannot take the shell's "; echo END" after it)
        node1.sh("systemd-run --unit=tbq-upgrade --collect sh -c 'twinbeat upgrade "
                 f"/mnt/b/{good.name} > /root/upgrade.log 2>&1'")

        def seen(text: str) -> None:
            # the plan on disk and the supervisor's status (cheap: no CLI start-up under
            # TCG every few seconds on the node doing the work); the status line a user
            # reads is checked with `twinbeat status` once the versions differ
            plan, _, status = text.partition("@@")
            m = re.search(r'"step":\s*"([a-z-]+)"', plan)
            if m and m.group(1) not in steps:
                steps[m.group(1)] = time.monotonic() - t0
                pair.log(f"upgrade: step {m.group(1)} at {steps[m.group(1)]:.0f} s")
            if not mixed_seen and re.search(r'"mixed":\s*true', status):
                cli = node1.sh("twinbeat status", check=False)[1]
                (mixed_seen if "MIXED VERSIONS" in cli else mixed_unsaid).append(cli)

        poll(pair, node1, "done upgrading",
             f"cat {PLAN}; echo @@; python3 -I -S {FAST_STATUS_PATH} || true",
             lambda out: re.search(r'"step":\s*"(done|stopped)"', out) is not None,
             timeout=3000, every=5.0, seen=seen)
        whole_s = time.monotonic() - t0
        pair.log(f"upgrade: finished after {whole_s:.0f} s")
        status = node1.sh("twinbeat upgrade --status")[1]
        pair.wait_formed("node1", timeout=600)
        pair.wait_http("node1", timeout=120)
    log_text = node1.sh("cat /root/upgrade.log; journalctl -b -u twinbeat-upgrade "
                        "--no-pager -o cat", check=False)[1]
    (pair.workdir / "upgrade.log").write_text(log_text)
    assert "step done" in status, f"{status}\n{log_text}"
    for node in pair.nodes:
        v = versions(node)
        assert (v["release"], v["peer_release"], v["mixed"]) == (n1, n1, False), v
    assert mixed_seen, ("twinbeat status never said MIXED VERSIONS during the upgrade"
                        + (f"; while the versions differed it said:\n{mixed_unsaid[0]}"
                           if mixed_unsaid else ""))
    for node in pair.nodes:  # each node is itself on the new slot (carried over)
        assert identity_of(node) == identity[node.name], node.name
        env = node.sh("grub-editenv /efi/grub/grubenv list")[1]
        assert "ORDER=B A" in env and "B_OK=1" in env and "B_TRY=0" in env, env
        text = node.sh("twinbeat status")[1]
        assert f"system: twinbeat {n1} on slot B" in text, text
    assert sha256s(node1, names) == sums, "the data on /srv changed across the upgrade"
    gaps = probe.gaps()
    moves = [g for g in gaps if g[0] != g[1]]
    assert len(gaps) == len(moves) and [(a, b) for a, b, _ in moves] == [
        ("node1", "node2"), ("node2", "node1")], gaps  # the handover and the failback
    handover_s, failback_s = moves[0][2], moves[1][2]
    pair.log(f"upgrade: handover {handover_s:.1f} s, failback {failback_s:.1f} s")
    _state.update(names=names, sums=sums)
    timeline = ", ".join(f"{k} {v:.0f}" for k, v in steps.items())
    return (f"rolling upgrade {n0} -> {n1} of the replicated pair in {whole_s:.0f} s "
            f"(steps first seen, s after the start: {timeline}); planned handover "
            f"{handover_s:.1f} s without answers, failback (auto_failback) {failback_s:.1f} s, "
            f"no other gap; data and identities intact, both on slot B")


@SHARED.scenario("update-pair-broken-n+2-on-node2-rolls-back-by-itself-node1-serves",
                 timeout=2400.0, after=UPGRADE)
def broken_rolls_back(pair: Pair) -> str:
    n1, n2 = bumped(pair.image, 1), bumped(pair.image, 2)
    _, broken = bundles_of(pair.image)
    node1, node2 = pair.nodes
    settle(pair, "node1", timeout=900)
    mount_bundles(node2)
    with Prober(pair) as probe:
        t0 = time.monotonic()
        code, text = node2.sh(f"twinbeat install /mnt/b/{broken.name}", timeout=1800,
                              check=False)
        assert code == 0, text
        install_s = time.monotonic() - t0
        pair.log(f"broken: installed on node2 in {install_s:.0f} s; rebooting it")
        vm = node2.need_vm()
        assert node2.shell is not None
        vm.sendline("systemctl reboot")
        node2.shell.logged_in = False
        t_reboot = time.monotonic()
        vm.expect(r"twinbeat: booting slot A", timeout=BOOT_TIMEOUT)  # the broken one
        t_broken = time.monotonic()
        pair.log(f"broken: node2 boots slot A {t_broken - t_reboot:.0f} s after the reboot")
        vm.expect(r"twinbeat: booting slot B", timeout=BOOT_TIMEOUT)  # back, by itself
        t_back = time.monotonic()
        pair.log(f"broken: node2 boots slot B again {t_back - t_broken:.0f} s later")
        out = poll(pair, node2, "rolled back", "twinbeat status",
                   lambda o: f"update to {n2} FAILED" in o
                   and f"system: twinbeat {n1} on slot B" in o, timeout=900, every=5.0)
        t_said = time.monotonic()
        settle(pair, "node1", timeout=600)
        t_whole = time.monotonic()
    want = (f"update to {n2} FAILED on slot A and was rolled back (running {n1}): "
            "twinbeat.service failed")
    assert want in out, out
    env = node2.sh("grub-editenv /efi/grub/grubenv list")[1]
    assert "A_OK=0" in env and "B_OK=1" in env, env
    v = versions(node2)
    assert (v["release"], v["peer_release"], v["mixed"]) == (n1, n1, False), v
    assert probe.owners() == ["node1"] and probe.gaps() == [], probe.gaps()
    if _state.get("names"):
        assert sha256s(node1, _state["names"]) == _state["sums"], "the data on /srv changed"
    return (f"broken {n2} installed on node2 in {install_s:.0f} s; it booted slot A "
            f"{t_broken - t_reboot:.0f} s after the reboot, was back in slot B's boot "
            f"{t_back - t_broken:.0f} s later (rollback), said FAILED in twinbeat status "
            f"{t_said - t_broken:.0f} s after booting the broken slot, pair whole and in "
            f"sync again {t_whole - t_reboot:.0f} s after the reboot; node1 answered "
            f"throughout ({len(probe.answers)} probes, no gap)")
