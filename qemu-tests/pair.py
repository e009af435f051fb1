"""Two twinbeat nodes under QEMU, cabled like the real thing, with an observer and faults.

Both VMs boot copy-on-write overlays of the one image (direct boot of the image's own kernel
and initrd, to save the firmware's time; the smoke scenarios boot through the real boot
loaders). Each VM has:

* ttyS0: its serial console on a unix socket, driven with pexpect and logged;
* ttyS1: the null-modem cable, a TCP stream between the two VMs' ``-chardev socket``
  (node1 listens, node2 connects and reconnects). Not ``-chardev udp``: that backend sends
  every byte as a datagram of its own, and under TCG load the receiving QEMU falls behind
  and the host drops bytes (measured: ~110 bytes a minute, a third of the heartbeat
  frames); it also stops reading for good after one ICMP "port unreachable" (the peer's
  QEMU was off). A stream has flow control, like the UART at the other end of a cable;
* the crossover cable: a virtio NIC on ``-netdev dgram``, point to point to the other VM;
* the public LAN: a virtio NIC on a tap device on a bridge in the harness's network
  namespace (netlab.Lab), where the observer (192.168.85.254, the nodes' gateway and ping
  node) sends HTTP requests and ARP probes;
* vdb: a blank second disk (for replication);
* an i6300ESB watchdog (``-watchdog-action reset``) and a QMP socket for the faults:
  ``set_link`` (crossover, public), ``chardev-change`` to a null backend (serial), SIGKILL of
  the QEMU process (power loss).

Both QEMUs run inside the namespace, so their taps are there and the UDP links use its own
loopback. Provisioning: node1 answers the interactive first-boot wizard on its console
(pexpect types every answer), node2 configures itself from a seed passed as the systemd
credential ``twinbeat.seed``; ``seed_both=True`` seeds node1 too (the demo).

A node powered off and on again boots its own overlay again (its configuration lives
there). Every QEMU we start and the namespace are removed by ``close()``, which also runs
from an atexit hook; vm.py kills leftover QEMUs by PID at exit too.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import gzip
import ipaddress
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from guest import Shell, ShellError  # noqa: E402
from netlab import ArpSampler, Lab  # noqa: E402
from vm import VM, Firmware, VMConfig, VMError  # noqa: E402

from firstboot.secret import SystemRng, generate_code, parse_code  # noqa: E402

GROUP = "service"  # the wizard's group name (firstboot.model.GROUP_NAME)
WEB_UNIT = "twinbeat-demo-web.service"
FLOATING = "192.168.85.3"
OBSERVER = ipaddress.IPv4Interface("192.168.85.254/24")
PROBE_SENDER = "192.168.85.250"  # the ARP sampler's sender address (nobody else's)
PASSWORD = "tbq-root-2468"
MEMORY_MIB = 768
VCPUS = 1  # each node's virtual CPUs
BOOT_TIMEOUT = 900.0  # boot to the wizard or a login prompt (TCG, two VMs, a loaded host)


def kernel_append(grub_cfg: str) -> str:
    """The direct boot's kernel arguments: systemd's (and the initrd's) from the image's own
    boot loader command line (grub.cfg's ``set cmdline=``), so that both ways of booting
    start the same units; vm.py adds root= and the serial console. Direct kernel boot does
    not use the boot loader, so its update check is masked too: under TCG it holds
    sysinit.target (and so twinbeat.service) back by ~20 s on every boot (mounting the
    ESP)."""
    m = re.search(r'^set cmdline="([^"]*)"$', grub_cfg, re.M)
    if m is None:
        raise ValueError("grub.cfg has no `set cmdline=` line")
    ours = [a for a in m.group(1).split() if a.startswith(("systemd.", "rd."))]
    return " ".join([*ours, "systemd.mask=systemd-boot-update.service"])


KERNEL_APPEND = kernel_append(
    (ROOT / "mkosi.extra/usr/lib/twinbeat/grub.cfg").read_text(encoding="utf-8"))

LINKS = ("serial", "crossover", "public")
SERIAL_PORT = 4001  # the null-modem's TCP port on the namespace's loopback
DISK_SIZE = "6G"  # the system disk: the image grows to it on the first boot
DATA_DISK = "vdb"  # the second disk, replicated when Pair(replicate=True)
DRBD_RES = "r0"  # the wizard's DRBD resource (firstboot.model.DRBD_RESOURCE)
MOUNT_POINT = "/srv"  # where the group mounts /dev/drbd0 (firstboot.model.MOUNT_POINT)
PAGE_RE = re.compile(r"twinbeat demo page served by (\S+)")
# The data services of Pair(services=True): a share over SMB and NFS and a database, on the
# replicated disk (the wizard's answers on node1, the same keys in node2's seed).
SHARE = "data"
SHARE_USER = "alice"
SHARE_PASSWORD = "Share-pass-2468"
NFS_EXPORT = f"{MOUNT_POINT}/shares/{SHARE}"
DATABASE = "app"
DB_OWNER = "appowner"
DB_PASSWORD = "Db-pass-13579"
SERVICE_UNITS = ("smbd.service", "nfs-server.service", "postgresql@17-main.service")

T = TypeVar("T")


class PairError(AssertionError):
    """A wait ran out or a node is not as expected; the message says what was awaited."""


@dataclass(frozen=True)
class Layout:
    """One node's hardware and cabling (same PCI slots on both, so the same NIC names)."""

    name: str
    index: int  # 1 or 2
    tap: str

    @property
    def other(self) -> int:
        return 3 - self.index

    @property
    def public_mac(self) -> str:
        return f"52:54:00:85:00:0{self.index}"

    @property
    def crossover_mac(self) -> str:
        return f"52:54:00:0a:00:0{self.index}"

    @property
    def public_ip(self) -> str:
        return f"192.168.85.{self.index}"

    @property
    def crossover_ip(self) -> str:
        return f"10.0.0.{self.index}"

    def serial_backend(self) -> dict[str, Any]:
        """The null-modem chardev as QMP's ChardevBackend (for chardev-change): a TCP
        stream on the namespace's loopback, node1 listening, node2 connecting (and
        reconnecting every second when node1's end goes away)."""
        addr = {"type": "inet", "data": {"host": "127.0.0.1", "port": str(SERIAL_PORT)}}
        if self.index == 1:
            return {"type": "socket", "data": {"addr": addr, "server": True, "wait": False}}
        return {"type": "socket", "data": {"addr": addr, "server": False, "reconnect": 1}}

    def serial_chardev(self) -> str:
        where = f"socket,id=nm,host=127.0.0.1,port={SERIAL_PORT}"
        return where + (",server=on,wait=off" if self.index == 1 else ",reconnect=1")

    def qemu_args(self, data_disk: Path, raw_disk: Path | None = None) -> list[str]:
        # raw_disk: a third disk (vdc), not replicated: the benchmark's reference
        raw = (["-drive", f"file={raw_disk},format=qcow2,if=none,id=raw,cache=unsafe",
                "-device", "virtio-blk-pci,drive=raw,addr=0x9"] if raw_disk else [])
        return [*raw,
            # public LAN: tap on the observer's bridge (PCI slot 5 -> enp0s5)
            "-netdev", f"tap,id=pub,ifname={self.tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=pub,id=pubnic,mac={self.public_mac},addr=0x5",
            # crossover cable: point to point UDP datagrams (slot 6 -> enp0s6)
            "-netdev", "dgram,id=xo,local.type=inet,local.host=127.0.0.1,"
                       f"local.port={4100 + self.index},remote.type=inet,"
                       f"remote.host=127.0.0.1,remote.port={4100 + self.other}",
            "-device", f"virtio-net-pci,netdev=xo,id=xonic,mac={self.crossover_mac},addr=0x6",
            # null-modem cable on ttyS1 (ttyS0 is the console, set up by vm.py)
            "-chardev", self.serial_chardev(),
            "-serial", "chardev:nm",
            # the disk to replicate
            "-drive", f"file={data_disk},format=qcow2,if=none,id=data,cache=unsafe",
            "-device", "virtio-blk-pci,drive=data,addr=0x8",
            "-device", "i6300esb", "-watchdog-action", "reset",
        ]


# The names the guest gives the NICs in PCI slots 5 and 6 (predictable names); node1's
# wizard lists them with their MAC addresses, and the harness checks it.
PUBLIC_IFACE = "enp0s5"
CROSSOVER_IFACE = "enp0s6"


def seed_text(layout: Layout, secret: str, disk: str = "none", services: bool = False) -> str:
    """A complete first-boot seed for this node (TOML); `disk` is the disk to replicate;
    `services`: serve the data services (file share, database) from it."""
    peer = Layout("node1" if layout.index == 2 else "node2", layout.other, "")
    lines = {
        "role": layout.name,
        "hostname": layout.name,
        "peer_hostname": peer.name,
        "cluster_name": "twinbeat",
        "public_interface": PUBLIC_IFACE,
        "public_address": f"{layout.public_ip}/24",
        "gateway": str(OBSERVER.ip),
        "dns": [str(OBSERVER.ip)],
        "crossover_interface": CROSSOVER_IFACE,
        "crossover_address": f"{layout.crossover_ip}/24",
        "peer_public_address": peer.public_ip,
        "peer_crossover_address": peer.crossover_ip,
        "public_heartbeat": True,
        "floating_addresses": [FLOATING],
        "serial_port": "ttyS1",
        "baud": 115200,
        "disk": disk,
        "secret": secret,
        "services": [WEB_UNIT.removesuffix(".service")],
        "root_password": PASSWORD,
        "ssh_key": "none",
    }
    if services:
        lines.update({
            "file_share": ["smb", "nfs"], "share_name": SHARE, "share_user": SHARE_USER,
            "share_password": SHARE_PASSWORD, "nfs_clients": str(OBSERVER.network),
            "database": DATABASE, "database_owner": DB_OWNER,
            "database_password": DB_PASSWORD,
        })
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in lines.items())


# --------------------------------------------------------------------------------------------
# Reading `twinbeat status --json`


def link_states(st: dict[str, Any]) -> dict[str, str]:
    return {link["name"]: link["state"] for link in st["links"]}


def group_of(st: dict[str, Any], name: str = GROUP) -> dict[str, Any]:
    for g in st["groups"]:
        if g["name"] == name:
            return dict(g)
    raise PairError(f"{st.get('node')}: no group {name!r} in status")


def brief(st: dict[str, Any]) -> str:
    """One line of a status for failure messages."""
    try:
        g = group_of(st)
        links = ", ".join(f"{k} {v}" for k, v in link_states(st).items())
        return (f"{st['node']}: peer {st['peer']['state']}, links [{links}], group owner "
                f"{g['owner']} (here {g['local']}: {g['reason']}), world "
                f"{'ok' if st['world']['ok'] else 'CUT OFF'}")
    except (KeyError, TypeError, PairError) as e:
        return f"unreadable status ({e!r})"


# --------------------------------------------------------------------------------------------


class Node:
    def __init__(self, pair: Pair, layout: Layout) -> None:
        self.pair = pair
        self.layout = layout
        self.name = layout.name
        self.vm: VM | None = None
        self.shell: Shell | None = None
        self.boots = 0
        self.data_disk = pair.workdir / f"{layout.name}-data.qcow2"
        self.raw_disk = pair.workdir / f"{layout.name}-raw.qcow2" if pair.replicate else None
        self.seed: str | None = None
        # This node's end of each cable: plugged in (QEMU starts with every cable in).
        self.plugged = {"serial": True, "crossover": True, "public": True}

    # -- power ---------------------------------------------------------------------------

    def config(self) -> VMConfig:
        extra = self.layout.qemu_args(self.data_disk, self.raw_disk)
        if self.seed is not None:
            b64 = base64.b64encode(self.seed.encode()).decode()
            extra += ["-smbios", f"type=11,value=io.systemd.credential.binary:twinbeat.seed={b64}"]
        extra += self.pair.extra_args
        kernel = self.pair.firmware == "kernel"
        return VMConfig(image=self.pair.image, name=self.name, firmware=self.pair.firmware,
                        memory_mib=MEMORY_MIB, cpus=VCPUS, append=KERNEL_APPEND if kernel else "",
                        # room for slot B and the state partition (made at first boot)
                        disk_size=DISK_SIZE,
                        extra_args=extra, wrapper=self.pair.lab.wrapper, reuse_overlay=True,
                        append_logs=self.boots > 0)

    def power_on(self) -> None:
        if self.vm is not None and self.vm.running:
            raise PairError(f"{self.name} is already running")
        for disk in (self.data_disk, self.raw_disk):
            if disk is not None and not disk.exists():
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk),
                                self.pair.data_size],
                               check=True, capture_output=True)
        self.vm = VM(self.config(), workdir=self.pair.workdir)
        self.boots += 1
        self.plugged = dict.fromkeys(self.plugged, True)
        self.pair.log(f"{self.name}: power on (boot {self.boots})")
        self.vm.start()
        self.shell = Shell(self.vm, PASSWORD)

    def power_off(self) -> float:
        """Power loss: SIGKILL its QEMU. Returns the time.monotonic() of the kill."""
        vm = self.need_vm()
        self.pair.log(f"{self.name}: power off (SIGKILL to QEMU pid "
                      f"{vm.proc.pid if vm.proc else '?'})")
        t = time.monotonic()
        vm.kill()
        if self.shell is not None:
            self.shell.logged_in = False
        return t

    @property
    def running(self) -> bool:
        return self.vm is not None and self.vm.running

    def need_vm(self) -> VM:
        if self.vm is None or not self.vm.running:
            raise PairError(f"{self.name} is not running")
        return self.vm

    def need_shell(self) -> Shell:
        self.need_vm()
        assert self.shell is not None
        if not self.shell.logged_in:
            self.pair.log(f"{self.name}: logging in on the console")
            self.shell.login(timeout=BOOT_TIMEOUT)
        return self.shell

    def qmp(self, command: str, **args: Any) -> Any:
        vm = self.need_vm()
        assert vm.qmp is not None
        return vm.qmp.execute(command, **args)

    # -- the shell ---------------------------------------------------------------------------

    def sh(self, command: str, timeout: float = 120.0, check: bool = True) -> tuple[int, str]:
        return self.need_shell().run(command, timeout=timeout, check=check)

    def status(self, cli: bool = False, timeout: float = 60.0) -> dict[str, Any]:
        """`twinbeat status --json` (cli=True), or the same answer read faster."""
        return self.need_shell().status(timeout=timeout, cli=cli)

    def wait_status(self, what: str, predicate: Callable[[dict[str, Any]], bool],
                    timeout: float = 120.0, interval: float = 0.5) -> dict[str, Any]:
        """Poll `twinbeat status --json` until predicate(status); fail naming `what`."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        error = ""
        while True:
            try:
                last = self.status()
                error = ""
                if predicate(last):
                    return last
            except ShellError as e:
                error = str(e)
            if time.monotonic() > deadline:
                seen = brief(last) if last is not None else "no status"
                raise PairError(f"{self.name}: not {what} within {timeout:.0f} s (last: {seen}"
                                f"{'; ' + error if error else ''})")
            time.sleep(interval)

    def boot_id(self) -> str:
        return self.sh("cat /proc/sys/kernel/random/boot_id")[1].strip()


class Pair:
    """The two nodes, the namespace with the observer, and the faults."""

    def __init__(self, image: Path, workdir: Path, *, seed_both: bool = False,
                 replicate: bool = False, services: bool = False,
                 say: Callable[[str], None] | None = None,
                 firmware: Firmware = "kernel", extra_args: tuple[str, ...] = (),
                 data_size: str = "256M") -> None:
        self.image = image.resolve()
        # the size of vdb (and vdc): what DRBD syncs in full when the pair forms
        self.data_size = data_size
        # "kernel": direct boot of the image's kernel (fast); "uefi": through OVMF and GRUB,
        # which choose the system slot (what updates need: `twinbeat install` refuses a node
        # its boot loader did not start)
        self.firmware: Firmware = firmware
        self.extra_args = list(extra_args)  # more QEMU arguments for both nodes
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.seed_both = seed_both
        # replicate vdb with DRBD (the group then also holds drbddisk::r0 and a file system
        # on /dev/drbd0 mounted on /srv); else the wizard and the seeds answer "none"
        self.replicate = replicate
        self.disk = DATA_DISK if replicate else "none"
        # the data services on the replicated disk (needs replicate)
        self.services = services and replicate
        self.say = say
        self.log_path = workdir / "pair.log"
        self._log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115
        self.t0 = time.monotonic()
        self.lab = Lab(OBSERVER)
        self.node1 = Node(self, Layout("node1", 1, self.lab.taps[0]))
        self.node2 = Node(self, Layout("node2", 2, self.lab.taps[1]))
        self.secret = generate_code(SystemRng())
        self.fingerprints: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self.closed = False
        self.booted = False
        atexit.register(self.close)

    @property
    def nodes(self) -> tuple[Node, Node]:
        return (self.node1, self.node2)

    def node(self, name: str) -> Node:
        return self.node1 if name == "node1" else self.node2

    def peer(self, node: Node) -> Node:
        return self.node2 if node is self.node1 else self.node1

    def log(self, text: str) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {text}"
        self._log.write(line + "\n")
        self._log.flush()
        if self.say is not None:
            self.say(text)

    # -- boot and provisioning -------------------------------------------------------------

    def boot(self) -> None:
        """Start both nodes, provision them (node1 by the wizard unless seed_both), log in."""
        start = time.monotonic()
        self.node2.seed = seed_text(self.node2.layout, self.secret, self.disk, self.services)
        if self.seed_both:
            self.node1.seed = seed_text(self.node1.layout, self.secret, self.disk,
                                        self.services)
        self.node1.power_on()
        if self.firmware != "kernel":
            # OVMF takes both serial ports as consoles: node2's firmware screen (escape
            # sequences) arriving over the null-modem on node1's COM2 while node1 is still
            # in its firmware takes node1 into the setup menu (seen). Node2 is powered on
            # once node1 is past its firmware (in GRUB, which reads only the first port);
            # later reboots meet the peer's heartbeats there (plain ASCII: no hotkey).
            self.node1.need_vm().expect(r"twinbeat: booting slot", timeout=BOOT_TIMEOUT)
        self.node2.power_on()
        if self.seed_both:
            self._await_seeded(self.node1)
        else:
            self._wizard(self.node1)
        self._await_seeded(self.node2)
        self.timings["provisioned"] = time.monotonic() - start
        for node in self.nodes:
            node.need_shell()
            if node.name not in self.fingerprints:
                # the seed was applied on the screen (tty1): ttyS0 showed no summary; the
                # fingerprint is also in cluster.toml's header
                text = node.sh("head -n 5 /etc/twinbeat/cluster.toml", timeout=60)[1]
                m = re.search(r"Fingerprint of the shared part: (\S+)", text)
                if not m:
                    raise PairError(f"{node.name}: no fingerprint in cluster.toml: {text!r}")
                self.fingerprints[node.name] = m.group(1)
        if len(set(self.fingerprints.values())) != 1:
            raise PairError(f"the nodes' setup fingerprints differ: {self.fingerprints}")
        self.timings["logged_in"] = time.monotonic() - start
        self.booted = True

    def _data_answers(self) -> list[tuple[str, str]]:
        """node1's answers to the data-service questions (what node2's seed says)."""
        if not self.services:
            return [(r"File share \(smb, nfs, both or none\) \[none\]: ", ""),
                    (r"PostgreSQL database \('none' for none\) \[none\]: ", "")]
        return [
            (r"File share \(smb, nfs, both or none\) \[none\]: ", "both"),
            (r"Share name \[data\]: ", SHARE),
            (r"Share user \[share\]: ", SHARE_USER),
            (r"Share user's SMB password: ", SHARE_PASSWORD),
            (r"Repeat the share password: ", SHARE_PASSWORD),
            (r"NFS clients \(a network\) \[192\.168\.85\.0/24\]: ", ""),
            (r"PostgreSQL database \('none' for none\) \[none\]: ", DATABASE),
            (r"Database owner \[app\]: ", DB_OWNER),
            (r"Database owner's password: ", DB_PASSWORD),
            (r"Repeat the database password: ", DB_PASSWORD),
        ]

    def _fingerprint(self, node: Node, text: str) -> None:
        m = re.search(r"fingerprint\s+(\S+) \(node1 and node2 must show the same\)", text)
        if not m:
            raise PairError(f"{node.name}: no fingerprint in the setup summary")
        self.fingerprints[node.name] = m.group(1)

    def _await_seeded(self, node: Node) -> None:
        vm = node.need_vm()
        self.log(f"{node.name}: waiting for the seed to configure it")
        # The seed applies on the first console to claim it: the screen (tty1) or ttyS0;
        # ttyS0 then says that setup finished on the other console (also when its setup
        # started after the other one had already written the configuration: "on another
        # console")
        got = vm.expect([r"This machine is now \S+, node\d of cluster",
                         r"Setup finished on [^\r\n:]+: this node is configured",
                         r"The seed cannot be used", r"Role \(node1 or node2\)"],
                        timeout=BOOT_TIMEOUT)
        assert vm.console is not None
        if got.startswith("The seed"):
            with contextlib.suppress(VMError):
                vm.expect("Nothing was written", timeout=30)
            problems = str(vm.console.before).replace("\r", "").strip()
            raise PairError(f"{node.name}: the seed was refused: {problems}")
        if got.startswith("Role"):
            raise PairError(f"{node.name}: no seed found: the wizard asks its questions")
        if got.startswith(("Setup finished", "This node is already")):
            # applied on the other console (tty1), whose summary this console did not show
            self.log(f"{node.name}: configured by its seed (on its other console)")
            return
        self._fingerprint(node, str(vm.console.before))
        self.log(f"{node.name}: configured by its seed")

    def _wizard(self, node: Node) -> None:
        """Answer node1's first-boot wizard on its serial console."""
        vm = node.need_vm()
        lay = node.layout
        self.log(f"{node.name}: waiting for the first-boot wizard")
        vm.expect(r"twinbeat first-boot setup \(on ttyS0\)", timeout=BOOT_TIMEOUT)
        self.timings["wizard_banner"] = time.monotonic() - self.t0
        nics: dict[str, str] = {}

        def listing() -> None:
            assert vm.console is not None
            for m in re.finditer(r"^\s+(\S+)\s+([0-9a-f:]{17})\s", str(vm.console.before),
                                 re.MULTILINE):
                nics[m.group(2)] = m.group(1)

        def public() -> str:
            listing()
            name = nics.get(lay.public_mac)
            if name is None:
                raise PairError(f"node1's wizard lists no card with MAC {lay.public_mac}: {nics}")
            if name != PUBLIC_IFACE:
                raise PairError(f"the public card is {name}, not {PUBLIC_IFACE} (the seed of "
                                "node2 uses the latter)")
            return name

        def crossover() -> str:
            listing()
            name = nics.get(lay.crossover_mac)
            if name is None:
                raise PairError(f"node1's wizard lists no card with MAC {lay.crossover_mac}")
            return name

        generated: list[str] = []

        def secret_answer() -> str:
            assert vm.console is not None
            match = vm.console.match
            shown = match.group(1) if isinstance(match, re.Match) else ""
            parse_code(shown)  # node1 offers a well-formed code of its own
            generated.append(shown)
            return self.secret  # ... and we type the one node2's seed holds

        steps: list[tuple[str, str | Callable[[], str]]] = [
            (r"Role \(node1 or node2\) \[node1\]: ", ""),
            (r"Hostname of this node \[node1\]: ", ""),
            (r"Hostname of the peer node \[node2\]: ", ""),
            (r"Cluster name \[twinbeat\]: ", ""),
            (r"Public interface \[\S+\]: ", public),
            (r"Public address/prefix \[192\.168\.85\.1/24\]: ", ""),
            (r"Gateway \('none' for no gateway\) \[192\.168\.85\.254\]: ", ""),
            (r"DNS servers \('none' for none\) \[192\.168\.85\.254\]: ", ""),
            (r"Crossover interface \[\S+\]: ", crossover),
            (r"Crossover address/prefix \[10\.0\.0\.1/24\]: ", ""),
            (r"Peer's public address \[192\.168\.85\.2\]: ", ""),
            (r"Peer's crossover address \[10\.0\.0\.2\]: ", ""),
            (r"Heartbeats over the public LAN too\? \(yes/no\) \[yes\]: ", ""),
            (r"Floating address\(es\) \[192\.168\.85\.3\]: ", ""),
            (r"Null-modem serial port \('none' for none\) \[ttyS1\]: ", ""),
            (r"Serial baud rate \[115200\]: ", ""),
            (r"Disk to replicate \('none' for none\) \[vdb\]: ", self.disk),
            (r"Shared secret code \[([0-9A-Z-]+)\]: ", secret_answer),
            *self._data_answers(),
            (r"Services to own \('none' for none\) \[none\]: ", "twinbeat-demo-web"),
            (r"Root password \[none\]: ", PASSWORD),
            (r"Repeat the root password: ", PASSWORD),
            (r"SSH public key for root \('none' for none\) \[none\]: ", ""),
            (r"NTP server \('none' for none\) \[192\.168\.85\.254\]: ", ""),
            (r"E-mail for alerts \('none' for none\) \[none\]: ", ""),
            (r"Write this configuration\? \(yes/no\) \[yes\]: ", ""),
        ]
        for prompt, answer in steps:
            got = vm.expect([prompt, r"  error: [^\r\n]+"], timeout=300)
            if got.startswith("  error:"):
                raise PairError(f"node1's wizard refused an answer: {got.strip()}")
            if prompt.startswith("Write this"):
                assert vm.console is not None
                self._fingerprint(node, str(vm.console.before))
            text = answer() if callable(answer) else answer
            vm.sendline(text)
        vm.expect(r"This machine is now node1, node1 of cluster 'twinbeat'", timeout=300)
        self.timings["wizard_done"] = time.monotonic() - self.t0
        self.log(f"node1: configured by the wizard (it offered code {generated[0]}; typed "
                 "node2's)")

    # -- waiting for the cluster -----------------------------------------------------------

    def wait_formed(self, owner: str = "node1", links: tuple[str, ...] = LINKS,
                    timeout: float = 300.0) -> dict[str, dict[str, Any]]:
        """Both nodes see each other on every link in `links`, and `owner` runs the group."""
        def formed(st: dict[str, Any]) -> bool:
            states = link_states(st)
            g = group_of(st)
            return (st["peer"]["state"] == "alive"
                    and all(states.get(name) == "up" for name in links)
                    and g["owner"] == owner
                    and (g["local"] == "running" if st["node"] == owner else g["local"] == "idle"))

        out = {}
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            what = f"in a formed cluster (links {', '.join(links)} up, {owner} running the group)"
            out[node.name] = node.wait_status(what, formed,
                                              timeout=max(30.0, deadline - time.monotonic()))
        return out

    def http_owner(self, timeout: float = 2.0) -> str | None:
        """Which node's web page the observer gets on the floating address (None: none)."""
        body = self.lab.http_get(FLOATING, timeout=timeout)
        if body is None:
            return None
        m = PAGE_RE.search(body)
        return m.group(1) if m else f"unexpected page {body[:60]!r}"

    def wait_http(self, node: str, timeout: float = 120.0, since: float | None = None) -> float:
        """Wait until the observer's HTTP requests to the floating address are answered by
        `node`; return the time.monotonic() of that answer."""
        deadline = time.monotonic() + timeout
        last: str | None = None
        while True:
            last = self.http_owner(timeout=1.0)
            if last == node:
                return time.monotonic()
            if time.monotonic() > deadline:
                neigh = self.lab.neighbour(FLOATING)
                raise PairError(f"the observer got no HTTP answer from {node} on {FLOATING} "
                                f"within {timeout:.0f} s (last answer: {last or 'none'}; "
                                f"neighbour entry: {neigh or 'none'})")
            time.sleep(0.1)

    def sampler(self) -> ArpSampler:
        return ArpSampler(self.lab, FLOATING, PROBE_SENDER)

    def mac_names(self) -> dict[str, str]:
        return {n.layout.public_mac: n.name for n in self.nodes}

    # -- faults ------------------------------------------------------------------------------

    def _plug(self, cable: str, up: bool, nodes: tuple[Node, ...] | None) -> None:
        """Plug in or pull out `cable` at the given nodes' ends (default: both ends)."""
        changed = []
        for node in nodes or self.nodes:
            if not node.running or node.plugged[cable] == up:
                continue
            if cable == "serial":
                # the null-modem: a null backend cuts it, the TCP stream restores it
                backend = node.layout.serial_backend() if up else {"type": "null", "data": {}}
                node.qmp("chardev-change", id="nm", backend=backend)
            else:
                node.qmp("set_link", name="xo" if cable == "crossover" else "pub", up=up)
            node.plugged[cable] = up
            changed.append(node.name)
        if changed:
            self.log(f"{cable} {'plugged in' if up else 'pulled out'} at {', '.join(changed)}")

    def set_crossover(self, up: bool, nodes: tuple[Node, ...] | None = None) -> None:
        self._plug("crossover", up, nodes)

    def set_serial(self, up: bool, nodes: tuple[Node, ...] | None = None) -> None:
        self._plug("serial", up, nodes)

    def set_public(self, node: Node, up: bool) -> None:
        self._plug("public", up, (node,))

    def heal(self) -> None:
        """Every cable back in (only the ends that are out)."""
        for cable in ("serial", "crossover", "public"):
            self._plug(cable, True, None)

    # -- artifacts and clean-up --------------------------------------------------------------

    def save_artifacts(self, dest: Path, reach: float = 90.0) -> None:
        """Consoles, QEMU logs, `twinbeat status --json` and `journalctl -b` of both nodes
        (as far as they can be reached) and the pair's own log, into dest."""
        dest.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            if node.vm is not None:
                node.vm.save_logs(dest)
            if not node.running or node.shell is None:
                (dest / f"{node.name}-status.txt").write_text("node not running\n")
                continue
            try:
                if not node.shell.logged_in:
                    node.shell.login(timeout=reach)
                (dest / f"{node.name}-status.json").write_text(
                    json.dumps(node.shell.status(cli=True), indent=2, sort_keys=True) + "\n")
            except (VMError, OSError) as e:
                (dest / f"{node.name}-status.txt").write_text(f"not reachable: {e}\n")
                continue
            try:
                con = node.vm.console if node.vm else None
                if con is not None:
                    con.searchwindowsize = 4096
                text = node.shell.out("journalctl -b --no-pager -o short-monotonic | gzip -1 "
                                      "| base64 -w 0", timeout=300)
                if con is not None:
                    con.searchwindowsize = None
                blob = base64.b64decode("".join(text.split()))
                (dest / f"{node.name}-journal.txt").write_bytes(gzip.decompress(blob))
            except (VMError, OSError, ValueError) as e:
                (dest / f"{node.name}-journal.txt").write_text(f"not readable: {e}\n")
        self._log.flush()
        if self.log_path.exists():
            shutil.copy(self.log_path, dest / "pair.log")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for node in self.nodes:
            if node.vm is not None:
                with contextlib.suppress(Exception):
                    node.vm.kill()
                node.vm.remove_overlay()
        self.lab.close()
        with contextlib.suppress(OSError):
            self._log.close()
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)


@contextlib.contextmanager
def observing(pair: Pair) -> Iterator[ArpSampler]:
    """ARP sampling of the floating address for the duration of a with-block."""
    s = pair.sampler()
    s.start()
    try:
        yield s
    finally:
        s.stop()


#: Time a scenario gets on top of its own limit when it boots the shared pair first.
BOOT_ALLOWANCE = 1200.0


class SharedPair:
    """A pair shared by the pair scenarios (the scenarios_*.py modules): booted by the first
    of them that runs, shut down after the last one (or by ``harness.at_end``).

    Each scenario may have a `prepare` (bring the pair to where the scenario starts) and a
    `check` run after it passed (the pair is as the next scenario expects it, e.g. back at
    the baseline): a scenario that passes but leaves the pair otherwise fails, as itself.
    On a failure: the pair's logs go to the scenario's artifacts, and the pair is shut down
    (the next scenario boots a new one) unless the scenario's `repair(pair)` brings it back
    and says so."""

    def __init__(self, prefix: str, *, replicate: bool = False, services: bool = False,
                 save_extra: Callable[[Pair, Path], None] | None = None,
                 firmware: Firmware = "kernel", seed_both: bool = False,
                 extra_args: Callable[[Path, Path], tuple[str, ...]] | None = None,
                 ) -> None:
        self.prefix = prefix
        self.replicate = replicate
        self.services = services
        # Pair's firmware and seed_both; extra_args(image, workdir): more QEMU arguments
        # for both nodes, made when the pair boots (e.g. a disk made in its workdir)
        self.firmware: Firmware = firmware
        self.seed_both = seed_both
        self.extra_args = extra_args
        # called before the pair boots (e.g. to forget what a former pair held)
        self.on_boot: list[Callable[[], None]] = []
        self.save_extra = save_extra
        self.pair: Pair | None = None
        self.workdir: Path | None = None
        self.names: set[str] = set()
        from harness import at_end

        at_end(self.shutdown)

    def get(self, image: Path) -> Pair:
        if self.pair is not None and not self.pair.closed:
            return self.pair
        from harness import extend_deadline

        extend_deadline(BOOT_ALLOWANCE)  # the boot is not the scenario's own time
        for hook in self.on_boot:
            hook()
        self.workdir = Path(tempfile.mkdtemp(prefix=self.prefix))
        extra = self.extra_args(image, self.workdir) if self.extra_args is not None else ()
        self.pair = Pair(image, self.workdir, replicate=self.replicate, services=self.services,
                         firmware=self.firmware, seed_both=self.seed_both, extra_args=extra)
        self.pair.boot()
        return self.pair

    def shutdown(self) -> None:
        if self.pair is not None:
            self.pair.close()
            self.pair = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def scenario(self, name: str, *, prepare: Callable[[Pair], None] | None = None,
                 check: Callable[[Pair], None] | None = None,
                 repair: Callable[[Pair], bool] | None = None,
                 timeout: float | None = None, after: str | None = None,
                 ) -> Callable[[Callable[[Pair], str]], Callable[[Pair], str]]:
        """Register `func(pair) -> detail` as the scenario `name` on this shared pair:
        `prepare(pair)` first, `check(pair)` after it passed (raise if the pair is not as
        the next scenario expects it), `repair(pair)` after a failure (True: the pair can
        be used on). `after`: the scenario whose pair this one goes on with; if that pair
        is not there (it failed, or was not selected), this one fails at once instead of
        booting a pair that is not where it starts."""
        from harness import DEFAULT_TIMEOUT, Context, ScenarioTimeout, scenario

        def register(func: Callable[[Pair], str]) -> Callable[[Pair], str]:
            def run(ctx: Context) -> str:
                pair: Pair | None = None
                if after is not None and (self.pair is None or self.pair.closed):
                    raise PairError(f"it goes on with the pair that {after!r} leaves, and "
                                    "there is none (that scenario failed or did not run)")
                try:
                    pair = self.get(ctx.image)
                    if prepare is not None:
                        prepare(pair)
                    detail = func(pair)
                    if check is not None:
                        try:
                            check(pair)
                        except Exception as e:
                            raise PairError(f"it left the pair unhealthy for the next "
                                            f"scenario: {e} (its own result: {detail})") from e
                    if not self.names.intersection(ctx.remaining):
                        self.shutdown()  # the last one: free the CPUs for the rest
                    return detail
                except (Exception, ScenarioTimeout):
                    pair = pair or self.pair
                    if pair is not None and ctx.artifacts is not None:
                        with contextlib.suppress(Exception):
                            pair.save_artifacts(ctx.artifacts)
                        if self.save_extra is not None:
                            with contextlib.suppress(Exception):
                                self.save_extra(pair, ctx.artifacts)
                    if pair is not None and (
                        not pair.booted or not self.names.intersection(ctx.remaining)
                        or repair is None or not repair(pair)
                    ):
                        self.shutdown()  # the next scenario boots a fresh pair
                    raise

            run.__name__ = func.__name__
            scenario(name, timeout=DEFAULT_TIMEOUT if timeout is None else timeout)(run)
            self.names.add(name)
            return func

        return register
