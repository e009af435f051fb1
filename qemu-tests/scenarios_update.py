"""Updates of one node through the real boot loader (UEFI, GRUB's A/B choice, RAUC):

a node on version N (the image under test), configured by a seed as node1 of a pair whose
peer is not there, installs the bundle of N+1 built from the same tree
(images/twinbeat-<N+1>.raucb: ``make image VERSION=<N+1>``) with ``twinbeat install
--reboot``: it boots slot B, passes its health check and keeps it, with its identity (machine
ID, host name, cluster configuration, SSH host keys) carried over. Then it installs a broken
N+2 (``make image VERSION=<N+2> TEST_BREAK=supervisor``: its supervisor never starts): the
node boots it, the health check fails, and the node goes back to N+1 by itself and says so
in ``twinbeat status``.

The bundles reach the node on a small ext4 disk made on the host (vdb), as from a USB stick.
The versions are found from the image's name: N+1 and N+2 bump its last number.
"""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from guest import Shell  # noqa: E402
from harness import Context, scenario  # noqa: E402
from pair import FLOATING, PAGE_RE, PASSWORD, Layout, Node, Pair, PairError, seed_text  # noqa: E402
from vm import VMError  # noqa: E402

from firstboot.secret import SystemRng, generate_code  # noqa: E402

BOOT_TIMEOUT = 900.0


def bumped(image: Path, by: int) -> str:
    m = re.match(r"twinbeat-(\d+)\.(\d+)\.(\d+)\.raw$", image.name)
    if not m:
        raise AssertionError(f"{image.name}: not twinbeat-X.Y.Z.raw")
    return f"{m.group(1)}.{m.group(2)}.{int(m.group(3)) + by}"


def bundle_disk(bundles: list[Path], dest: Path) -> Path:
    """An ext4 image holding the bundles (the node mounts it as a USB stick)."""
    content = dest.parent / "bundles"
    content.mkdir()
    total = 0
    for b in bundles:
        if not b.exists():
            raise AssertionError(f"{b}: missing (make image VERSION=... first)")
        shutil.copy(b, content / b.name)
        total += b.stat().st_size
    size = total + total // 5 + 64 * 2**20
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "BUNDLES", "-d", str(content), str(dest),
                    str(size // 1024)], check=True, capture_output=True)
    shutil.rmtree(content)
    return dest


def install_and_reboot(shell: Shell, bundle: str) -> float:
    """`twinbeat install` (checked), then a reboot typed without waiting for an answer;
    returns how long the install took."""
    t = time.monotonic()
    code, text = shell.run(f"twinbeat install {bundle}", timeout=1800, check=False)
    assert code == 0, text
    took = time.monotonic() - t
    shell.vm.sendline("systemctl reboot")
    shell.logged_in = False
    return took


# (long by design: three boots through the firmware and two RAUC installs under TCG)
@scenario("update-keeps-a-healthy-slot-and-rolls-back-a-broken-one", timeout=2700.0)
def update_and_rollback(ctx: Context) -> str:
    n1, n2 = bumped(ctx.image, 1), bumped(ctx.image, 2)
    good = ctx.image.with_name(f"twinbeat-{n1}.raucb")
    broken = ctx.image.with_name(f"twinbeat-{n2}-broken.raucb")
    disk = bundle_disk([good, broken], ctx.workdir / "bundles.img")
    seed = seed_text(Layout("node1", 1, ""), generate_code(SystemRng()))
    b64 = base64.b64encode(seed.encode()).decode()
    extra = [
        # the NICs the seed names (enp0s5, enp0s6), the null-modem port; no peer on them
        "-netdev", "user,id=pub", "-device", "virtio-net-pci,netdev=pub,addr=0x5",
        "-netdev", "user,id=xo", "-device", "virtio-net-pci,netdev=xo,addr=0x6",
        "-chardev", "null,id=nm", "-serial", "chardev:nm",
        "-drive", f"file={disk},format=raw,if=none,id=bundles,readonly=on",
        "-device", "virtio-blk-pci,drive=bundles,addr=0x8",
        "-smbios", f"type=11,value=io.systemd.credential.binary:twinbeat.seed={b64}",
    ]
    vm = ctx.vm("update", firmware="uefi", disk_size="8G", memory_mib=1024,
                extra_args=extra)
    vm.expect(r"twinbeat: booting slot A", timeout=BOOT_TIMEOUT)
    shell = Shell(vm, PASSWORD)
    shell.login(timeout=BOOT_TIMEOUT)
    before = {f: shell.out(f"cat {f}").strip() for f in (
        "/etc/machine-id", "/etc/hostname", "/etc/ssh/host-keys/ssh_host_ed25519_key.pub")}
    toml = shell.out("sha256sum /etc/twinbeat/cluster.toml").split()[0]
    shell.run("systemctl is-active twinbeat.service", timeout=300)
    shell.run("mkdir -p /mnt/b && mount -o ro /dev/vdb /mnt/b")
    shell.run("systemctl is-system-running --wait; true", timeout=600)
    out = shell.out("twinbeat status", timeout=120)
    assert f"system: twinbeat {ctx.image.name[9:-4]} on slot A" in out, out

    # N -> N+1: kept
    t0 = time.monotonic()
    install_s = install_and_reboot(shell, f"/mnt/b/{good.name}")
    vm.expect(r"twinbeat: booting slot B", timeout=BOOT_TIMEOUT)
    shell.login(timeout=BOOT_TIMEOUT)
    shell.run("systemctl is-active twinbeat.service", timeout=300)
    deadline = time.monotonic() + 600
    while True:
        out = shell.out("twinbeat status", timeout=120)
        if f"system: twinbeat {n1} on slot B" in out and "update:" not in out:
            break
        assert time.monotonic() < deadline, f"slot B not kept within 600 s:\n{out}"
        time.sleep(5)
    kept_s = time.monotonic() - t0
    after = {f: shell.out(f"cat {f}").strip() for f in before}
    assert after == before, (before, after)
    assert shell.out("sha256sum /etc/twinbeat/cluster.toml").split()[0] == toml
    env = shell.out("grub-editenv /efi/grub/grubenv list")
    assert "ORDER=B A" in env and "B_OK=1" in env and "B_TRY=0" in env, env

    # N+1 -> broken N+2: rolled back by itself
    shell.run("mkdir -p /mnt/b && mount -o ro /dev/vdb /mnt/b")
    t1 = time.monotonic()
    install_and_reboot(shell, f"/mnt/b/{broken.name}")
    vm.expect(r"twinbeat: booting slot A", timeout=BOOT_TIMEOUT)
    t_broken = time.monotonic()
    vm.expect(r"twinbeat: booting slot B", timeout=BOOT_TIMEOUT)
    back_s = time.monotonic() - t_broken
    shell.login(timeout=BOOT_TIMEOUT)
    shell.run("systemctl is-active twinbeat.service", timeout=300)
    deadline = time.monotonic() + 300
    while True:
        out = shell.out("twinbeat status", timeout=120)
        if f"system: twinbeat {n1} on slot B" in out and "FAILED" in out:
            break
        assert time.monotonic() < deadline, f"no rollback report within 300 s:\n{out}"
        time.sleep(5)
    rollback_s = time.monotonic() - t_broken
    want = (f"update to {n2} FAILED on slot A and was rolled back (running {n1}): "
            "twinbeat.service failed")
    assert want in out, out
    env = shell.out("grub-editenv /efi/grub/grubenv list")
    assert "A_OK=0" in env and "B_OK=1" in env, env
    return (f"N+1 installed in {install_s:.0f} s, kept {kept_s:.0f} s after the install "
            f"started; broken N+2 booted and rolled back: back in slot B's boot loader "
            f"{back_s:.0f} s after it booted, serving N+1 again {rollback_s:.0f} s after "
            f"(whole N+2 attempt {time.monotonic() - t1:.0f} s)")


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
    """What makes the node itself: machine ID, host name, SSH host key, cluster.toml."""
    text = node.sh("cat /etc/machine-id /etc/hostname /etc/ssh/host-keys/ssh_host_ed25519_key.pub"
                   "; sha256sum /etc/twinbeat/cluster.toml /etc/twinbeat/authkeys")[1]
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


# (long by design: a pair booted through the firmware, three RAUC installs, five reboots with
# their health checks and resyncs under TCG)
@scenario("update-pair-rolling-upgrade-one-handover-then-broken-version-rolls-back",
          timeout=7200.0)
def rolling_upgrade(ctx: Context) -> str:
    from drbdpair import settle, sha256s
    from scenarios_replication import write_files

    n0 = ctx.image.name[len("twinbeat-"):-len(".raw")]
    n1, n2 = bumped(ctx.image, 1), bumped(ctx.image, 2)
    good = ctx.image.with_name(f"twinbeat-{n1}.raucb")
    broken = ctx.image.with_name(f"twinbeat-{n2}-broken.raucb")
    disk = bundle_disk([good, broken], ctx.workdir / "bundles.img")
    pair = Pair(ctx.image, ctx.workdir / "pair", replicate=True, firmware="uefi",
                extra_args=("-drive", f"file={disk},format=raw,if=none,id=bundles,readonly=on",
                            "-device", "virtio-blk-pci,drive=bundles,addr=0xa"),
                say=None)
    node1, node2 = pair.nodes
    try:
        pair.boot()
        settle(pair, "node1", timeout=900)
        for node in pair.nodes:
            v = versions(node)
            assert (v["release"], v["peer_release"], v["mixed"]) == (n0, n0, False), v
            mount_bundles(node)
        names = [f"before-upgrade-{i}" for i in range(3)]
        sums = write_files(node1, names, mib=2)
        identity = {n.name: identity_of(n) for n in pair.nodes}

        # N -> N+1 on both, run from the serving node (it reboots itself in the middle)
        mixed_seen: list[str] = []
        with Prober(pair) as upgrade_probe:
            t0 = time.monotonic()
            node1.sh(f"nohup twinbeat upgrade /mnt/b/{good.name} > /root/upgrade.log 2>&1 "
                     "< /dev/null &")

            def note_mixed(text: str) -> None:
                if "MIXED VERSIONS" in text and not mixed_seen:
                    mixed_seen.append(text)

            poll(pair, node1, "done upgrading", "twinbeat upgrade --status; "
                 "twinbeat status | grep '^versions:' || true",
                 lambda out: "step done" in out or "step stopped" in out, timeout=4500,
                 seen=note_mixed)
            whole_s = time.monotonic() - t0
            status = node1.sh("twinbeat upgrade --status")[1]
            assert "step done" in status, status
            pair.wait_formed("node1", timeout=600)
            pair.wait_http("node1", timeout=120)
        log_text = node1.sh("cat /root/upgrade.log; journalctl -b -u twinbeat-upgrade "
                            "--no-pager -o cat", check=False)[1]
        (ctx.workdir / "upgrade.log").write_text(log_text)
        if ctx.artifacts is not None:
            ctx.artifacts.mkdir(parents=True, exist_ok=True)
            (ctx.artifacts / "upgrade.log").write_text(log_text)
        for node in pair.nodes:
            v = versions(node)
            assert (v["release"], v["peer_release"], v["mixed"]) == (n1, n1, False), v
        assert mixed_seen, "twinbeat status never said MIXED VERSIONS during the upgrade"
        for node in pair.nodes:  # each node is itself on the new slot (carried over)
            assert identity_of(node) == identity[node.name], node.name
            env = node.sh("grub-editenv /efi/grub/grubenv list")[1]
            assert "ORDER=B A" in env and "B_OK=1" in env and "B_TRY=0" in env, env
        assert sha256s(node1, names) == sums, "the data on /srv changed across the upgrade"
        gaps = upgrade_probe.gaps()
        moves = [g for g in gaps if g[0] != g[1]]
        assert len(gaps) == len(moves) and [(a, b) for a, b, _ in moves] == [
            ("node1", "node2"), ("node2", "node1")], gaps  # the handover and the failback
        handover_s, failback_s = moves[0][2], moves[1][2]

        # a broken N+2 on node2 (owns nothing): rolled back by itself, node1 serves on
        settle(pair, "node1", timeout=900)
        mount_bundles(node2)
        with Prober(pair) as broken_probe:
            code, text = node2.sh(f"twinbeat install /mnt/b/{broken.name}", timeout=1800,
                                  check=False)
            assert code == 0, text
            assert node2.vm is not None
            node2.vm.sendline("systemctl reboot")
            assert node2.shell is not None
            node2.shell.logged_in = False
            t_reboot = time.monotonic()
            node2.vm.expect(r"twinbeat: booting slot", timeout=BOOT_TIMEOUT)
            out = poll(pair, node2, "rolled back", "twinbeat status",
                       lambda o: f"update to {n2} FAILED" in o and f"twinbeat {n1}" in o,
                       timeout=1800)
            rollback_s = time.monotonic() - t_reboot
            pair.wait_formed("node1", timeout=600)
            rejoined_s = time.monotonic() - t_reboot
        assert "twinbeat.service failed" in out, out
        assert broken_probe.owners() == ["node1"] and broken_probe.gaps() == [], (
            broken_probe.gaps())
        assert sha256s(node1, names) == sums
        return (f"rolling upgrade {n0} -> {n1} of the replicated pair in {whole_s:.0f} s; "
                f"planned handover {handover_s:.1f} s without answers, failback "
                f"{failback_s:.1f} s; data intact; broken {n2} on node2 rolled back to {n1} "
                f"{rollback_s:.0f} s after its reboot, pair whole again after "
                f"{rejoined_s:.0f} s, node1 answered throughout")
    except Exception:
        if ctx.artifacts is not None:
            with contextlib.suppress(Exception):
                pair.save_artifacts(ctx.artifacts)
        raise
    finally:
        pair.close()
